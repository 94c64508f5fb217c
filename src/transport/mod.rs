//! HTTP between hosts: the wire types, the block/manifest server and the client.
