//! The connection caps: at most `max_connections` open connections in all and
//! `max_connections_per_ip` per client address. A [`Permit`] holds one place until dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::IntGauge;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` connections are open.
    Total,
    /// `max_connections_per_ip` connections from this address are open.
    PerIp,
}

impl Refusal {
    /// Stable label (the `reason` of `connections_refused_total`).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

/// Counts open connections against the caps.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_ip: usize,
    open_gauge: IntGauge,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Inner {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, total: usize) {
        self.open_gauge
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

impl Admission {
    /// Caps of `max_total` connections and `max_per_ip` per address; `open_gauge` follows the
    /// number of open connections.
    pub fn new(max_total: usize, max_per_ip: usize, open_gauge: IntGauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                open_gauge,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Takes a place for a connection from `ip`, or says which cap is reached.
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = ip.to_canonical();
        let mut counts = self.inner.counts();
        if counts.total >= self.inner.max_total {
            return Err(Refusal::Total);
        }
        if counts.per_ip.get(&ip).copied().unwrap_or(0) >= self.inner.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *counts.per_ip.entry(ip).or_default() += 1;
        counts.total += 1;
        self.inner.publish(counts.total);
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.counts().total
    }
}

/// One open connection's place; dropping it frees the place.
pub struct Permit {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.inner.counts();
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        self.inner.publish(counts.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize) -> Admission {
        Admission::new(total, per_ip, IntGauge::new("open", "open").unwrap())
    }

    #[test]
    fn the_per_ip_cap_counts_each_address_apart() {
        let caps = admission(10, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerIp));
        // The same address written as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(caps.admit(mapped).err(), Some(Refusal::PerIp));
        let _other = caps.admit(b).unwrap();
        drop(first);
        let _again = caps.admit(a).unwrap();
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn the_total_cap_holds_and_places_come_back() {
        let gauge = IntGauge::new("open", "open").unwrap();
        let caps = Admission::new(2, 2, gauge.clone());
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let held: Vec<Permit> = (1..=2).map(|n| caps.admit(ip(n)).unwrap()).collect();
        assert_eq!(gauge.get(), 2);
        assert_eq!(caps.admit(ip(3)).err(), Some(Refusal::Total));
        drop(held);
        assert_eq!((caps.open(), gauge.get()), (0, 0));
        assert!(
            caps.inner.counts().per_ip.is_empty(),
            "no entry left behind"
        );
        assert!(caps.admit(ip(3)).is_ok());
    }
}
