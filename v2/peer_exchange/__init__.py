"""34/WAKU2-PEER-EXCHANGE: service (protocol), client, wire codec (rpc_codec)."""
