//! Pod addresses from the node's podCIDR, host-local IPAM style: the next free address after
//! the last one handed out (so a just-released address is not reused at once), skipping the
//! network address, the first host address and the broadcast address. Reservations are files
//! in `<state-dir>/ipam/<ip>` holding the pod UID, so a restarted agent keeps them.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{s}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s}: prefix must be between /8 and /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    fn first_last(&self) -> (u32, u32) {
        let net = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        // Skip the network address and .1 (a gateway's by convention), and the broadcast.
        (net + 2, net + size - 2)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

/// The next free address after `last` (wrapping), or None when the range is full.
pub fn next_free(
    cidr: &Cidr,
    used: &BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let (first, end) = cidr.first_last();
    let count = end - first + 1;
    let start = match last.map(u32::from) {
        Some(l) if (first..=end).contains(&l) => l + 1 - first,
        _ => 0,
    };
    (0..count)
        .map(|i| Ipv4Addr::from(first + (start + i) % count))
        .find(|ip| !used.contains(ip))
}

/// The reservations on disk.
pub struct Ipam {
    cidr: Cidr,
    dir: PathBuf,
    last: Option<Ipv4Addr>,
}

impl Ipam {
    pub fn new(cidr: Cidr, dir: PathBuf) -> std::io::Result<Ipam> {
        fs::create_dir_all(&dir)?;
        let last = fs::read_to_string(dir.join("last"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Ok(Ipam { cidr, dir, last })
    }

    fn reservations(&self) -> Vec<(Ipv4Addr, String)> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_str()?.parse().ok()?;
                Some((ip, fs::read_to_string(e.path()).unwrap_or_default()))
            })
            .collect()
    }

    /// The address reserved for `uid`, reserving one if it has none.
    pub fn allocate(&mut self, uid: &str) -> Result<Ipv4Addr, String> {
        let held = self.reservations();
        if let Some((ip, _)) = held.iter().find(|(_, u)| u.trim() == uid) {
            return Ok(*ip);
        }
        let used: BTreeSet<Ipv4Addr> = held.iter().map(|(ip, _)| *ip).collect();
        let ip = next_free(&self.cidr, &used, self.last)
            .ok_or_else(|| format!("no free address left in {:?}", self.cidr))?;
        fs::write(self.dir.join(ip.to_string()), uid).map_err(|e| e.to_string())?;
        fs::write(self.dir.join("last"), ip.to_string()).map_err(|e| e.to_string())?;
        self.last = Some(ip);
        Ok(ip)
    }

    pub fn release(&mut self, uid: &str) {
        for (ip, u) in self.reservations() {
            if u.trim() == uid {
                let _ = fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_reserved_addresses_and_goes_round_robin() {
        let cidr = Cidr::parse("10.78.1.0/24").unwrap();
        let mut used = BTreeSet::new();
        let a = next_free(&cidr, &used, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 78, 1, 2));
        used.insert(a);
        let b = next_free(&cidr, &used, Some(a)).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 78, 1, 3));
        // a released: the next one is still after b.
        used.remove(&a);
        used.insert(b);
        assert_eq!(
            next_free(&cidr, &used, Some(b)),
            Some(Ipv4Addr::new(10, 78, 1, 4))
        );
        // Wraps from .254 to .2; never .255, .0 or .1.
        assert_eq!(
            next_free(&cidr, &BTreeSet::new(), Some(Ipv4Addr::new(10, 78, 1, 254))),
            Some(Ipv4Addr::new(10, 78, 1, 2))
        );
        let all: BTreeSet<Ipv4Addr> = (2..=254).map(|i| Ipv4Addr::new(10, 78, 1, i)).collect();
        assert_eq!(next_free(&cidr, &all, None), None);
        assert!(cidr.contains(Ipv4Addr::new(10, 78, 1, 77)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 78, 2, 77)));
        assert_eq!(
            Cidr::parse("10.78.1.7/24").unwrap().network,
            Ipv4Addr::new(10, 78, 1, 0)
        );
        assert!(Cidr::parse("10.78.1.0").is_err());
    }

    #[test]
    fn reservations_persist() {
        let dir = std::env::temp_dir().join(format!("ipam-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cidr = Cidr::parse("10.79.2.0/24").unwrap();
        let mut ipam = Ipam::new(cidr, dir.clone()).unwrap();
        let a = ipam.allocate("uid-a").unwrap();
        assert_eq!(ipam.allocate("uid-a").unwrap(), a, "idempotent per pod");
        let b = ipam.allocate("uid-b").unwrap();
        assert_ne!(a, b);
        // A restarted agent continues after b and keeps a's reservation.
        let mut again = Ipam::new(cidr, dir.clone()).unwrap();
        assert_eq!(again.allocate("uid-a").unwrap(), a);
        again.release("uid-a");
        let c = again.allocate("uid-c").unwrap();
        assert_eq!(c, Ipv4Addr::new(10, 79, 2, 4));
        let _ = fs::remove_dir_all(&dir);
    }
}
