//! Finding swarms: mDNS advertisement and browsing, and static addresses.
