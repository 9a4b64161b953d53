//! Who held an IP address when: pod IPs are reused, so a call is named by the owner its address
//! had at the call's start time, never by whoever has it now.
//!
//! Each address keeps a short list of tenures (owner, from, until). A tenure is held by the API
//! objects that claim it (a pod and the EndpointSlices listing it) and ends when the last one
//! lets go. A new pod claiming an address ends any other pod's tenure on it (the kubelet only
//! hands out an address once its previous pod is gone). A call that falls between two
//! tenures (its pod's watch event had not arrived yet) goes to the next owner: the address
//! was free before it, so nobody else can have answered.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use crate::identity::model::PodMeta;

/// Ended tenures are kept this long, for calls that are resolved late.
pub const RETENTION_NS: u64 = 600_000_000_000;
/// A call at most this long before a tenure starts is given to it when nothing held the address.
const GAP_LIMIT_NS: u64 = 60_000_000_000;
/// Tenures kept per address (the oldest ended one goes first).
const MAX_TENURES: usize = 8;

/// What an address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpOwner {
    Pod(Arc<PodMeta>),
    Service { namespace: Arc<str>, name: Arc<str> },
    Node(Arc<str>),
}

impl IpOwner {
    /// Names the owner across the objects that mention it (a pod and its EndpointSlices).
    pub fn key(&self) -> String {
        match self {
            Self::Pod(pod) => format!("pod/{}/{}", pod.namespace, pod.name),
            Self::Service { namespace, name } => format!("service/{namespace}/{name}"),
            Self::Node(name) => format!("node/{name}"),
        }
    }

    /// Lower wins when several owners hold an address at once.
    fn rank(&self) -> u8 {
        match self {
            Self::Pod(_) => 0,
            Self::Service { .. } => 1,
            Self::Node(_) => 2,
        }
    }

    /// Whether `self` says more than `other` about the same owner (a watched pod vs. an
    /// EndpointSlice's reference to it).
    fn richer_than(&self, other: &IpOwner) -> bool {
        match (self, other) {
            (Self::Pod(new), Self::Pod(old)) => !new.uid.is_empty() || old.uid.is_empty(),
            _ => true,
        }
    }
}

#[derive(Clone, Debug)]
struct Tenure {
    key: String,
    owner: IpOwner,
    from: u64,
    until: Option<u64>,
    /// The API objects that claim this tenure.
    holders: Vec<String>,
}

impl Tenure {
    fn covers(&self, at: u64) -> bool {
        self.from <= at && self.until.is_none_or(|until| at < until)
    }
}

#[derive(Default)]
pub struct IpHistory {
    by_ip: HashMap<IpAddr, Vec<Tenure>>,
    cap: usize,
}

/// The claim was refused: the table is at its cap.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl IpHistory {
    pub fn new(cap: usize) -> Self {
        Self {
            by_ip: HashMap::new(),
            cap,
        }
    }

    /// `holder` (an API object) says `owner` has `ip` since `from`. `exclusive`: the owner is a
    /// pod that got the address from the kubelet, so no other pod holds it any more.
    pub fn claim(
        &mut self,
        ip: IpAddr,
        owner: IpOwner,
        holder: &str,
        from: u64,
        exclusive: bool,
    ) -> Result<(), Full> {
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= self.cap {
            return Err(Full);
        }
        let tenures = self.by_ip.entry(ip).or_default();
        let key = owner.key();
        if let Some(open) = tenures
            .iter_mut()
            .find(|t| t.key == key && t.until.is_none())
        {
            if !open.holders.iter().any(|h| h == holder) {
                open.holders.push(holder.to_string());
            }
            if owner.richer_than(&open.owner) {
                open.owner = owner;
            }
            return Ok(());
        }
        // Never start before the end of an earlier tenure of the same kind of owner.
        let rank = owner.rank();
        let latest_end = tenures
            .iter()
            .filter(|t| t.owner.rank() == rank)
            .filter_map(|t| t.until)
            .max()
            .unwrap_or(0);
        let from = from.max(latest_end);
        if exclusive {
            for other in tenures
                .iter_mut()
                .filter(|t| t.until.is_none() && t.owner.rank() == rank)
            {
                other.until = Some(from.max(other.from));
            }
        }
        tenures.push(Tenure {
            key,
            owner,
            from,
            until: None,
            holders: vec![holder.to_string()],
        });
        trim(tenures);
        Ok(())
    }

    /// `holder` no longer says `owner_key` has `ip`; the tenure ends at `now` when nobody does.
    pub fn release(&mut self, ip: IpAddr, owner_key: &str, holder: &str, now: u64) {
        let Some(tenures) = self.by_ip.get_mut(&ip) else {
            return;
        };
        if let Some(open) = tenures
            .iter_mut()
            .find(|t| t.key == owner_key && t.until.is_none())
        {
            open.holders.retain(|h| h != holder);
            if open.holders.is_empty() {
                open.until = Some(now.max(open.from));
            }
        }
    }

    /// Who had `ip` at `at` (unix ns).
    pub fn owner_at(&self, ip: IpAddr, at: u64) -> Option<&IpOwner> {
        let tenures = self.by_ip.get(&ip)?;
        let holding = tenures
            .iter()
            .filter(|t| t.covers(at))
            .min_by_key(|t| (t.owner.rank(), std::cmp::Reverse(t.from)));
        if let Some(tenure) = holding {
            return Some(&tenure.owner);
        }
        tenures
            .iter()
            .filter(|t| t.from > at && t.from - at <= GAP_LIMIT_NS)
            .min_by_key(|t| (t.from, t.owner.rank()))
            .map(|t| &t.owner)
    }

    /// Forgets tenures that ended more than [`RETENTION_NS`] before `now`.
    pub fn prune(&mut self, now: u64) {
        self.by_ip.retain(|_, tenures| {
            tenures.retain(|t| t.until.is_none_or(|u| now.saturating_sub(u) < RETENTION_NS));
            !tenures.is_empty()
        });
    }
}

/// Keeps at most [`MAX_TENURES`], dropping the oldest ended ones.
fn trim(tenures: &mut Vec<Tenure>) {
    while tenures.len() > MAX_TENURES {
        let oldest_ended = tenures
            .iter()
            .enumerate()
            .filter(|(_, t)| t.until.is_some())
            .min_by_key(|(_, t)| t.until)
            .map(|(i, _)| i);
        match oldest_ended {
            Some(i) => tenures.remove(i),
            None => tenures.remove(0),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn pod(name: &str, uid: &str) -> IpOwner {
        IpOwner::Pod(Arc::new(PodMeta {
            namespace: "shop".into(),
            name: name.into(),
            uid: uid.into(),
            ..PodMeta::default()
        }))
    }

    fn name(owner: Option<&IpOwner>) -> Option<String> {
        owner.map(|o| o.key())
    }

    #[test]
    fn a_reused_address_names_each_call_by_its_owner_at_the_time() {
        let ip: IpAddr = "10.1.0.7".parse().unwrap();
        let mut history = IpHistory::new(16);
        history
            .claim(ip, pod("a", "1"), "pods/a", 100 * S, true)
            .unwrap();
        history.release(ip, "pod/shop/a", "pods/a", 200 * S);
        history
            .claim(ip, pod("b", "2"), "pods/b", 230 * S, true)
            .unwrap();
        assert_eq!(
            name(history.owner_at(ip, 150 * S)).as_deref(),
            Some("pod/shop/a")
        );
        assert_eq!(
            name(history.owner_at(ip, 199 * S)).as_deref(),
            Some("pod/shop/a")
        );
        assert_eq!(
            name(history.owner_at(ip, 240 * S)).as_deref(),
            Some("pod/shop/b")
        );
        // Between the two: the address was free, so the call was b's (its event came late).
        assert_eq!(
            name(history.owner_at(ip, 210 * S)).as_deref(),
            Some("pod/shop/b")
        );
        // Long before anyone: unknown.
        assert_eq!(history.owner_at(ip, 10 * S), None);
    }

    #[test]
    fn a_new_pod_ends_the_old_pods_tenure_even_before_its_delete_arrives() {
        let ip: IpAddr = "10.1.0.8".parse().unwrap();
        let mut history = IpHistory::new(16);
        history
            .claim(ip, pod("a", "1"), "pods/a", 100 * S, true)
            .unwrap();
        history
            .claim(ip, pod("b", "2"), "pods/b", 300 * S, true)
            .unwrap();
        assert_eq!(
            name(history.owner_at(ip, 299 * S)).as_deref(),
            Some("pod/shop/a")
        );
        assert_eq!(
            name(history.owner_at(ip, 301 * S)).as_deref(),
            Some("pod/shop/b")
        );
        // The late delete of a changes nothing.
        history.release(ip, "pod/shop/a", "pods/a", 400 * S);
        assert_eq!(
            name(history.owner_at(ip, 350 * S)).as_deref(),
            Some("pod/shop/b")
        );
    }

    #[test]
    fn a_tenure_lasts_while_any_object_holds_it_and_prefers_the_watched_pod() {
        let ip: IpAddr = "10.1.0.9".parse().unwrap();
        let mut history = IpHistory::new(16);
        history
            .claim(ip, pod("a", ""), "slices/s1", 100 * S, false)
            .unwrap();
        history
            .claim(ip, pod("a", "uid-a"), "pods/a", 110 * S, true)
            .unwrap();
        let Some(IpOwner::Pod(meta)) = history.owner_at(ip, 120 * S) else {
            panic!("pod expected")
        };
        assert_eq!(&*meta.uid, "uid-a");
        history.release(ip, "pod/shop/a", "pods/a", 130 * S);
        assert!(
            history.owner_at(ip, 140 * S).is_some(),
            "the slice still holds it"
        );
        history.release(ip, "pod/shop/a", "slices/s1", 150 * S);
        assert_eq!(history.owner_at(ip, 100 * S + GAP_LIMIT_NS * 3), None);
        history.prune(150 * S + RETENTION_NS);
        assert!(history.by_ip.is_empty());
    }

    #[test]
    fn pods_win_over_nodes_and_the_table_is_bounded() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut history = IpHistory::new(1);
        history
            .claim(ip, IpOwner::Node("n1".into()), "nodes/n1", 0, false)
            .unwrap();
        history
            .claim(ip, pod("p", "u"), "pods/p", 10 * S, false)
            .unwrap();
        assert_eq!(
            name(history.owner_at(ip, 20 * S)).as_deref(),
            Some("pod/shop/p")
        );
        assert_eq!(
            name(history.owner_at(ip, 5 * S)).as_deref(),
            Some("node/n1")
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            history.claim(other, IpOwner::Node("n2".into()), "nodes/n2", 0, false),
            Err(Full)
        );
        for i in 0..20 {
            history
                .claim(
                    ip,
                    pod(&format!("p{i}"), "u"),
                    &format!("pods/p{i}"),
                    (30 + i) * S,
                    true,
                )
                .unwrap();
        }
        assert!(history.by_ip[&ip].len() <= MAX_TENURES);
    }
}
