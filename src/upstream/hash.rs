//! The hash every worker and every host computes alike (consistent hashing must send one
//! key to one host on Envoy's threads and nginx's processes): FNV-1a over the bytes, then
//! a 64-bit finalizer so nearby keys spread.

/// Hash of `b`, stable across processes, hosts and releases of this library.
pub fn bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// MurmurHash3's 64-bit finalizer.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_stable() {
        // Pinned: changing the hash moves every consistently hashed key.
        assert_eq!(super::bytes(b"user-42"), 0xa395_32c7_ab05_1e8d);
        assert_ne!(super::bytes(b"a"), super::bytes(b"b"));
    }
}
