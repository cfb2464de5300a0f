"""Webhook alerts on job events: an outbox of deliveries, sent by a dispatcher thread.

`events` notices the job events that alert and writes one `WebhookDelivery` per subscriber;
`dispatcher` sends the due ones with retries (`deliver` makes one attempt), and records each
attempt on the job's timeline. Nothing here runs inside a job's transaction or thread, and no
error here reaches the engine.
"""
