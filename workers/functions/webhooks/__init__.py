"""Webhook delivery (functions.webhooks.handler): completion events from the region's bus,
POSTed signed to the report's notify URL or its tenant's default, retried for a day."""
