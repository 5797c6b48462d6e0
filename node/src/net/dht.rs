//! How many peers the DHT has, estimated from this node's routing table.

/// Estimates how many peers the DHT has from this node's routing table.
///
/// `buckets` are `(i, n)`: `n` peers at XOR distance in `[2^i, 2^(i+1))`. Buckets near this
/// node are complete (they hold every peer that close), far ones are capped at k = 20, so the
/// estimate uses the closest buckets that together hold k peers: they cover `2^(i+1)` of the
/// `2^256` keys, so the network has about `count · 2^256 / 2^(i+1)` peers. With fewer than k peers
/// known in all, the table is the whole network: the answer is their number plus this node.
pub fn dht_size_estimate(buckets: &[(u32, usize)]) -> u64 {
    const K: usize = 20;
    let mut sorted = buckets.to_vec();
    sorted.sort_unstable();
    let total: usize = sorted.iter().map(|(_, n)| n).sum();
    if total < K {
        return total as u64 + 1;
    }
    let mut count = 0usize;
    for (i, n) in sorted {
        count += n;
        if count >= K {
            let estimate = count as f64 * 2f64.powi(256 - (i as i32 + 1));
            return if estimate >= u64::MAX as f64 {
                u64::MAX
            } else {
                (estimate as u64).max(total as u64 + 1)
            };
        }
    }
    total as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_are_the_whole_network() {
        assert_eq!(dht_size_estimate(&[]), 1);
        assert_eq!(dht_size_estimate(&[(255, 3), (254, 2)]), 6);
    }

    #[test]
    fn density_of_close_buckets_scales_up() {
        // A network of 2^12 peers: about 2^(12-256+i+1) peers per bucket i near this node.
        // Buckets 244..=255 hold 1, 2, 4, … peers (256-i-… halving toward this node).
        let mut buckets = Vec::new();
        for i in 244u32..=255 {
            let n = 1usize << (i - 244);
            buckets.push((i, n.min(20)));
        }
        let e = dht_size_estimate(&buckets);
        // The closest 1+2+4+8+16 = 31 peers lie within 2^249 of this node: 31 · 2^7 = 3968.
        assert_eq!(e, 3968);
        assert!((2048..=8192).contains(&e), "{e}");
    }
}
