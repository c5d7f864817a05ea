"""Messages to people outside the app (e-mail, text messages): a transactional outbox and delivery adapters.

Domains queue a message in the same transaction as the change that causes it (`queue_message`); a dispatcher
delivers pending messages through the configured adapter (`LogSender` by default, `SmtpSender` for e-mail).
"""
