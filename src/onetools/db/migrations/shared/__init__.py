"""Steps of the shared chain (federated tables: users, groups, ACLs, zones, VDCs, markets)."""
