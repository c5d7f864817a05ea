"""Therapist pictures: uploaded as JPEG, PNG or WebP, served as a clean JPEG without any of the camera's metadata."""

from __future__ import annotations

import io
import struct
import zlib
from typing import AsyncIterator, Callable

import aiohttp
from PIL import ExifTags, Image, ImageCms

from accounts.pictures import MAX_PIXELS
from accounts_api import Api, api, audit_events, expect  # noqa: F401 - `api` is a fixture
from conftest import RunningServer, Users, approve_therapist, start_server
from core.clock import FrozenClock
from core.settings import Settings

RED, BLUE = (220, 20, 20), (20, 20, 220)


def camera_jpeg(width: int = 1600, height: int = 1000, orientation: int = 6) -> bytes:
    """A landscape photo, red on the left and blue on the right, as a phone writes it: EXIF with GPS and an
    orientation tag, an ICC profile and a comment."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.Model] = "Pocket 12"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (51.0, 30.0, 26.0),
        ExifTags.GPS.GPSLongitudeRef: "W",
        ExifTags.GPS.GPSLongitude: (0.0, 7.0, 39.0),
    }
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, icc_profile=icc, comment=b"taken at home", quality=90)
    data = out.getvalue()
    # The fixture itself must carry what the server is expected to remove.
    check = Image.open(io.BytesIO(data))
    assert check.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert check.getexif()[ExifTags.Base.Orientation] == orientation and "icc_profile" in check.info
    return data


def png(width: int = 40, height: int = 30, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (0, 128, 0, 0) if mode == "RGBA" else 0).save(out, format="PNG")
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size in a few bytes (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def upload(api: Api, user: object, data: bytes, content_type: str = "image/jpeg"):  # type: ignore[no-untyped-def]
    return await api("PUT", "/api/me/picture", user, data=data, headers={"Content-Type": content_type})


async def test_uploaded_photo_is_served_upright_small_and_without_metadata(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    reply = expect(await upload(api, therapist, camera_jpeg()), 200)
    url = reply.body["therapist"]["picture_url"]
    assert url == f"/api/therapists/{therapist.id}/picture?v=1"
    client = await users.client()
    served = expect(await api("GET", url, client), 200)
    assert served.headers["Content-Type"] == "image/jpeg"
    assert "private" in served.headers["Cache-Control"]

    image = Image.open(io.BytesIO(served.raw))
    assert image.format == "JPEG"
    assert len(image.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
    assert b"Exif" not in served.raw and b"PhoneCo" not in served.raw and b"taken at home" not in served.raw
    max_side = server.services.settings.picture_max_side
    # Orientation 6 means "turn 90 degrees clockwise to view": the landscape photo comes back portrait, red on top.
    assert image.size == (max_side * 1000 // 1600, max_side)
    rgb = image.convert("RGB")
    top, bottom = rgb.getpixel((image.width // 2, image.height // 8)), rgb.getpixel((image.width // 2, image.height * 7 // 8))
    assert top[0] > 180 and top[2] < 60, top
    assert bottom[2] > 180 and bottom[0] < 60, bottom
    [event] = await audit_events(server, "account.updated", therapist.id)
    assert event.fields == ["picture"]


async def test_png_and_webp_become_jpeg_and_each_upload_bumps_the_version(users: Users, api: Api) -> None:
    therapist = await users.therapist()
    expect(await upload(api, therapist, png(), "image/png"), 200)
    webp = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(webp, format="WEBP")
    reply = expect(await upload(api, therapist, webp.getvalue(), "image/webp"), 200)
    assert reply.body["therapist"]["picture_url"].endswith("?v=2")
    served = expect(await api("GET", reply.body["therapist"]["picture_url"], therapist), 200)
    image = Image.open(io.BytesIO(served.raw))
    assert (image.format, image.size) == ("JPEG", (64, 48))


async def test_bad_pictures_are_refused_and_keep_the_old_one(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    expect(await upload(api, therapist, png(), "image/png"), 200)
    before = await api.me(therapist)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    truncated = camera_jpeg()[:3000]
    cases = [
        (b"I am not a picture at all", "image/png", 400, "invalid_image"),
        (b"", "image/jpeg", 400, "invalid_image"),
        (gif.getvalue(), "image/png", 400, "invalid_image"),
        (truncated, "image/jpeg", 400, "invalid_image"),
        (png(), "image/gif", 415, "unsupported_media"),
        (png(), "text/plain", 415, "unsupported_media"),
        (png(), "application/octet-stream", 415, "unsupported_media"),
        (png_header_only(9000, 9000), "image/png", 413, "too_large"),
        (png_header_only(30000, 30000), "image/png", 413, "too_large"),
    ]
    assert 9000 * 9000 > MAX_PIXELS
    for data, content_type, status, code in cases:
        expect(await upload(api, therapist, data, content_type), status, code)
    assert await api.me(therapist) == before
    assert len(await audit_events(server, "account.updated", therapist.id)) == 1


async def test_oversized_body_is_413(make_settings: Callable[..., Settings], clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    running = await start_server(make_settings(max_picture_bytes=100_000), clock=clock)
    try:
        api, users = Api(running, http), Users(running, http)
        therapist = await users.therapist()
        big = camera_jpeg(2000, 2000) + b"\0" * 100_000
        expect(await upload(api, therapist, big), 413, "too_large")

        async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
            for _ in range(4):
                yield b"\xff" * 40_000

        expect(await upload(api, therapist, streamed()), 413, "too_large")  # type: ignore[arg-type]
        assert (await api.me(therapist))["therapist"]["picture_url"] is None
    finally:
        await running.runner.cleanup()


async def test_who_may_see_a_picture(server: RunningServer, users: Users, api: Api) -> None:
    pending = await users.therapist(approved=False)
    client, admin, other = await users.client(), await users.admin(), await users.therapist()
    url = expect(await upload(api, pending, png(), "image/png"), 200).body["therapist"]["picture_url"]
    expect(await api("GET", url, pending), 200)
    expect(await api("GET", url, admin), 200)
    expect(await api("GET", url, client), 404, "not_found")
    expect(await api("GET", url, other), 404, "not_found")
    expect(await api("GET", url), 401, "invalid_token")
    await approve_therapist(server, pending.id)
    expect(await api("GET", url, client), 200)
    for path in (f"/api/therapists/{other.id}/picture", f"/api/therapists/{client.id}/picture",
                 "/api/therapists/999999/picture", "/api/therapists/abc/picture", "/api/therapists/99999999999999/picture"):
        expect(await api("GET", path, client), 404, "not_found")


async def test_unchanged_picture_is_not_sent_again(users: Users, api: Api) -> None:
    therapist = await users.therapist()
    url = expect(await upload(api, therapist, png(), "image/png"), 200).body["therapist"]["picture_url"]
    first = expect(await api("GET", url, therapist), 200)
    again = await api("GET", url, therapist, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.raw == b""


async def test_therapist_deletes_picture(server: RunningServer, users: Users, api: Api) -> None:
    therapist = await users.therapist()
    url = expect(await upload(api, therapist, png(), "image/png"), 200).body["therapist"]["picture_url"]
    reply = expect(await api("DELETE", "/api/me/picture", therapist), 200)
    assert reply.body["therapist"]["picture_url"] is None
    expect(await api("GET", url, therapist), 404, "not_found")
    expect(await api("DELETE", "/api/me/picture", therapist), 200)
    assert len(await audit_events(server, "account.updated", therapist.id)) == 2


async def test_only_therapists_have_pictures(users: Users, api: Api) -> None:
    client, admin = await users.client(), await users.admin()
    for user in (client, admin):
        expect(await upload(api, user, png(), "image/png"), 403, "forbidden")
        expect(await api("DELETE", "/api/me/picture", user), 403, "forbidden")
    expect(await upload(api, None, png(), "image/png"), 401, "invalid_token")
