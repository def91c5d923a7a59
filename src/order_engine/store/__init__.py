"""PostgreSQL persistence of orders, their events and API keys."""
