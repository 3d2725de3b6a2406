"""The metadata layer: the ledger, `blockchain get`, the master and the synchronizer."""
