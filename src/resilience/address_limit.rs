//! A rate limit per client address, in a table of bounded size: what
//! customer sign-ins with tokens never seen before are held to, so a flood
//! from one address leaves shoppers at other addresses signing in.
//!
//! An IPv4 client counts by its address, an IPv6 one by its /64 (what one
//! subscriber is handed: counting single IPv6 addresses would give an
//! attacker 2^64 limits). Each tracked address costs one table entry. An
//! entry whose bucket has refilled is the same as no entry, so it is
//! dropped when room is needed (and by `forget_idle`). Past
//! `max_addresses` still busy, addresses not yet tracked share one bucket
//! of the same rate: a flood rotating through more addresses than that is
//! held to one address's limit in all, memory stays bounded, and the
//! addresses already tracked keep their own buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one client counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Address {
    V4(u32),
    /// The top 64 bits.
    V6(u64),
}

impl Address {
    fn of(addr: IpAddr) -> Address {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Address::V4(u32::from(v4)),
            IpAddr::V6(v6) => Address::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// A token bucket kept as the time it is next empty-enough to refuse
/// (GCRA's theoretical arrival time): `rps` a second, `burst` at once.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// One permit's worth of time.
    interval: Duration,
    /// How far ahead of now the bucket may run: `burst - 1` permits.
    tolerance: Duration,
}

impl Rate {
    /// Takes a permit from the bucket `tat`, or says how long until one.
    fn take(self, tat: &mut Instant, now: Instant) -> Result<(), Duration> {
        let start = (*tat).max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        *tat = start + self.interval;
        Ok(())
    }
}

struct Table {
    buckets: HashMap<Address, Instant>,
    /// The bucket addresses share when the table is full.
    overflow: Instant,
    /// When full buckets were last dropped to make room.
    swept: Instant,
}

/// `rps` and `burst` per client address, for at most `max_addresses`
/// addresses at once.
pub struct AddressLimit {
    rate: Rate,
    max_addresses: usize,
    table: Mutex<Table>,
}

/// Whether a permit came from the address's own bucket or the shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Own,
    Shared,
}

impl AddressLimit {
    pub fn new(rps: u32, burst: u32, max_addresses: usize) -> AddressLimit {
        let interval = Duration::from_secs(1) / rps.max(1);
        let now = Instant::now();
        AddressLimit {
            rate: Rate {
                interval,
                tolerance: interval * burst.max(1).saturating_sub(1),
            },
            max_addresses: max_addresses.max(1),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: now,
                swept: now,
            }),
        }
    }

    /// Takes a permit for `addr` from the bucket it counts against (named
    /// either way), or says how long until one.
    pub fn check(&self, addr: IpAddr) -> (Bucket, Result<(), Duration>) {
        self.check_at(addr, Instant::now())
    }

    fn check_at(&self, addr: IpAddr, now: Instant) -> (Bucket, Result<(), Duration>) {
        let key = Address::of(addr);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tat) = table.buckets.get_mut(&key) {
            return (Bucket::Own, self.rate.take(tat, now));
        }
        // Dropping full buckets is a pass over the table: at most once per
        // permit's worth of time, so a full table under a rotating flood
        // is not swept on every request.
        if table.buckets.len() >= self.max_addresses
            && now.duration_since(table.swept) >= self.rate.interval
        {
            table.buckets.retain(|_, tat| *tat > now);
            table.swept = now;
        }
        if table.buckets.len() < self.max_addresses {
            let mut tat = now;
            let taken = self.rate.take(&mut tat, now);
            table.buckets.insert(key, tat);
            return (Bucket::Own, taken);
        }
        (Bucket::Shared, self.rate.take(&mut table.overflow, now))
    }

    /// Drops the buckets that have refilled (they mean nothing) and gives
    /// their memory back.
    pub fn forget_idle(&self) {
        self.forget_idle_at(Instant::now());
    }

    fn forget_idle_at(&self, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.buckets.retain(|_, tat| *tat > now);
        table.buckets.shrink_to_fit();
        table.swept = now;
    }

    /// How many addresses have a bucket now.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn each_address_has_its_own_burst() {
        let (limit, now) = (AddressLimit::new(1, 3, 100), Instant::now());
        for _ in 0..3 {
            assert_eq!(limit.check_at(ip("192.0.2.1"), now), (Bucket::Own, Ok(())));
        }
        assert_eq!(
            limit.check_at(ip("192.0.2.1"), now),
            (Bucket::Own, Err(Duration::from_secs(1)))
        );
        // Another address is untouched by the first one's flood.
        for _ in 0..3 {
            assert_eq!(limit.check_at(ip("192.0.2.2"), now), (Bucket::Own, Ok(())));
        }
        // A second later the first has one permit again.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            limit.check_at(ip("192.0.2.1"), later),
            (Bucket::Own, Ok(()))
        );
        assert!(limit.check_at(ip("192.0.2.1"), later).1.is_err());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let (limit, now) = (AddressLimit::new(1, 2, 100), Instant::now());
        assert!(limit.check_at(ip("2001:db8:1:2::1"), now).1.is_ok());
        assert!(limit.check_at(ip("2001:db8:1:2::ffff"), now).1.is_ok());
        assert!(limit.check_at(ip("2001:db8:1:2:aaaa::9"), now).1.is_err());
        assert!(limit.check_at(ip("2001:db8:1:3::1"), now).1.is_ok());
        assert_eq!(limit.tracked(), 2);
        // A mapped IPv4 address is the IPv4 address.
        assert!(limit.check_at(ip("::ffff:192.0.2.9"), now).1.is_ok());
        assert!(limit.check_at(ip("192.0.2.9"), now).1.is_ok());
        assert!(limit.check_at(ip("192.0.2.9"), now).1.is_err());
    }

    #[test]
    fn past_the_cap_new_addresses_share_one_bucket_and_memory_stays_bounded() {
        let (limit, now) = (AddressLimit::new(1, 2, 50), Instant::now());
        for i in 0..50 {
            assert_eq!(
                limit.check_at(v4(0x0a00_0000 + i), now),
                (Bucket::Own, Ok(()))
            );
        }
        // Busy buckets all: a rotating flood shares one burst.
        let shared = (50..10_000)
            .filter(|i| limit.check_at(v4(0x0a00_0000 + i), now) == (Bucket::Shared, Ok(())))
            .count();
        assert_eq!(shared, 2, "one burst for every address past the cap");
        assert_eq!(limit.tracked(), 50);
        // The tracked ones keep their own.
        assert_eq!(limit.check_at(ip("10.0.0.1"), now), (Bucket::Own, Ok(())));
    }

    #[test]
    fn refilled_buckets_make_room_and_are_forgotten() {
        let (limit, now) = (AddressLimit::new(1, 1, 2), Instant::now());
        assert!(limit.check_at(ip("192.0.2.1"), now).1.is_ok());
        assert!(limit.check_at(ip("192.0.2.2"), now).1.is_ok());
        assert_eq!(
            limit.check_at(ip("192.0.2.3"), now),
            (Bucket::Shared, Ok(()))
        );
        assert!(
            limit.check_at(ip("192.0.2.4"), now).1.is_err(),
            "shared, spent"
        );
        // Both buckets are full again a second later: room for a new one.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            limit.check_at(ip("192.0.2.3"), later),
            (Bucket::Own, Ok(()))
        );
        assert_eq!(limit.tracked(), 1);
        limit.forget_idle_at(later + Duration::from_secs(1));
        assert_eq!(limit.tracked(), 0);
    }
}
