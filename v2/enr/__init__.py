"""EIP-778 node records with the Waku keys (enr) and EIP-1459 DNS discovery (dns)."""
