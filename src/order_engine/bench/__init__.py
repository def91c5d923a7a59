"""`order-engine bench`: measurements that ship with the product."""
