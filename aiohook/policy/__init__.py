"""Policy: rules and decisions. Reads DiskFacts/HostFacts only; knows nothing of XML or probes."""
