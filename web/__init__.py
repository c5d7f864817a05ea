"""The browser client (HTML, CSS, JavaScript modules) served by the server from `web/static/`."""
