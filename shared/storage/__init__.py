"""The Store interface and its backends: SQLite, and the InfluxDB API with a write-ahead spool."""
