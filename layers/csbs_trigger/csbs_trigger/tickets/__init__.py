"""The ticket systems a backup's result is written back to: Jira Cloud, Jira Data Center and
ServiceNow, each an adapter behind ``TicketClient``; what is written is built in ``note``."""
