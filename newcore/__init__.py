"""The new core: domain, ports, Kafka and HBase adapters, Write and Read APIs (DESIGN.md)."""
