"""The trigger side: what starts a backup (schedules, EventBridge events, webhooks)."""
