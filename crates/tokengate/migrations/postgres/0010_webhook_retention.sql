-- Housekeeping deletes webhook history past its retention (`usage_retention_days`):
-- attempts by when they were made, finished events by when they finished.
CREATE INDEX webhook_deliveries_at ON webhook_deliveries(at);
CREATE INDEX webhook_outbox_delivered ON webhook_outbox(delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX webhook_outbox_given_up ON webhook_outbox(given_up_at) WHERE given_up_at IS NOT NULL;
