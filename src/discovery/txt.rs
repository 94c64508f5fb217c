//! The TXT record of an advert: what it carries and how it is kept small.
//!
//! An announcement (PTR, SRV, TXT and the address records) must fit one mDNS packet of
//! 1452 bytes; a record that does not is sent alone in an oversized packet that IP then
//! fragments, and fragments are the first thing a busy LAN or a switch drops. With names capped
//! at 63 bytes the other records take under 450 bytes, so the TXT record gets [`TXT_BUDGET`].
//! Role and swarm always come first; extras follow in the caller's order, each carried whole or
//! not at all, and `omitted=N` says how many were left out.

use std::collections::BTreeMap;

use super::{DiscoveryError, Role};

/// Most bytes the encoded TXT record may take.
pub const TXT_BUDGET: usize = 900;

/// TXT key holding the [`Role`].
pub const KEY_ROLE: &str = "role";
/// TXT key holding the swarm id.
pub const KEY_SWARM: &str = "swarm";
/// TXT key, set by the advertiser, counting the extras that did not fit.
pub const KEY_OMITTED: &str = "omitted";

/// Longest swarm id accepted, in hex digits.
pub const SWARM_ID_MAX: usize = 64;

/// Bytes one `key=value` string takes on the wire: its length byte plus the text.
fn wire_len(key: &str, value: &str) -> usize {
    1 + key.len() + 1 + value.len()
}

/// Room kept for the `omitted=N` marker.
const MARKER_ROOM: usize = 1 + KEY_OMITTED.len() + 1 + 5;

/// The encoded properties, in order, and how many extras were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub props: Vec<(String, String)>,
    pub omitted: usize,
}

impl Encoded {
    pub(crate) fn wire_len(&self) -> usize {
        self.props.iter().map(|(k, v)| wire_len(k, v)).sum()
    }
}

/// Checks that `id` is a usable swarm id: 1 to [`SWARM_ID_MAX`] hex digits.
pub(crate) fn check_swarm_id(id: &str) -> Result<(), DiscoveryError> {
    if id.is_empty() || id.len() > SWARM_ID_MAX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DiscoveryError::InvalidSwarmId(id.to_owned()));
    }
    Ok(())
}

/// Checks that `key` can be an extra: lowercase ASCII letters, digits, `-`, `_` or `.`, and not
/// one of the keys this module writes itself.
pub(crate) fn check_key(key: &str) -> Result<(), DiscoveryError> {
    let bad = |reason: &'static str| DiscoveryError::InvalidTxtKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(bad("use lowercase letters, digits, '-', '_' or '.'"));
    }
    if [KEY_ROLE, KEY_SWARM, KEY_OMITTED].contains(&key) {
        return Err(bad("it is reserved"));
    }
    Ok(())
}

/// Builds the TXT properties of an advert within [`TXT_BUDGET`].
pub(crate) fn encode(
    role: Role,
    swarm: Option<&str>,
    extras: &[(String, String)],
) -> Result<Encoded, DiscoveryError> {
    let mut props = vec![(KEY_ROLE.to_owned(), role.as_str().to_owned())];
    if let Some(id) = swarm {
        check_swarm_id(id)?;
        props.push((KEY_SWARM.to_owned(), id.to_ascii_lowercase()));
    }
    for (i, (key, _)) in extras.iter().enumerate() {
        check_key(key)?;
        if extras[..i].iter().any(|(k, _)| k == key) {
            return Err(DiscoveryError::InvalidTxtKey {
                key: key.clone(),
                reason: "it is given twice",
            });
        }
    }

    let mut used: usize = props.iter().map(|(k, v)| wire_len(k, v)).sum();
    let room = TXT_BUDGET - MARKER_ROOM;
    let mut omitted = 0;
    for (key, value) in extras {
        let len = wire_len(key, value);
        // One string of a TXT record is at most 255 bytes after its length byte.
        if len > 256 || used + len > room {
            omitted += 1;
            continue;
        }
        used += len;
        props.push((key.clone(), value.clone()));
    }
    if omitted > 0 {
        props.push((KEY_OMITTED.to_owned(), omitted.to_string()));
    }
    Ok(Encoded { props, omitted })
}

/// What a browser reads back from a TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub role: Role,
    pub swarm: Option<String>,
    pub extras: BTreeMap<String, String>,
}

/// Reads the properties of a found service; `None` if it has no role we know (another
/// program's service, or a newer dfpull with a role this one cannot use).
pub(crate) fn decode<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Decoded> {
    let mut role = None;
    let mut swarm = None;
    let mut extras = BTreeMap::new();
    for (key, value) in props {
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            KEY_ROLE => role = value.parse::<Role>().ok(),
            KEY_SWARM => {
                swarm = (check_swarm_id(value).is_ok()).then(|| value.to_ascii_lowercase());
            }
            _ => {
                extras.entry(key).or_insert_with(|| value.to_owned());
            }
        }
    }
    Some(Decoded {
        role: role?,
        swarm,
        extras,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extras(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn small_advert_round_trips() {
        let enc = encode(
            Role::Seed,
            Some("00C0ffee"),
            &extras(&[("images", "alpine:3.20,nginx:1.27"), ("v", "1")]),
        )
        .unwrap();
        assert_eq!(enc.omitted, 0);
        assert_eq!(enc.props[0], ("role".into(), "seed".into()));
        assert_eq!(enc.props[1], ("swarm".into(), "00c0ffee".into()));
        let dec = decode(enc.props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(dec.role, Role::Seed);
        assert_eq!(dec.swarm.as_deref(), Some("00c0ffee"));
        assert_eq!(dec.extras.len(), 2);
        assert_eq!(dec.extras["images"], "alpine:3.20,nginx:1.27");
    }

    #[test]
    fn overflow_keeps_role_and_swarm_and_counts_what_was_left_out() {
        // 20 extras of ~110 bytes: about 2200 bytes asked, 900 allowed.
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("img{i:02}"), "x".repeat(100)))
            .collect();
        let mut with_huge = many.clone();
        with_huge.insert(0, ("huge".into(), "y".repeat(300)));
        let enc = encode(Role::Coordinator, Some("ab12"), &with_huge).unwrap();

        assert!(enc.wire_len() <= TXT_BUDGET, "{} bytes", enc.wire_len());
        assert_eq!(enc.props[0].0, "role");
        assert_eq!(enc.props[1].0, "swarm");
        let kept: Vec<&str> = enc.props[2..enc.props.len() - 1]
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        // The oversized one is dropped whole, the others kept in order while they fit.
        assert!(!kept.contains(&"huge"));
        assert_eq!(kept[0], "img00");
        assert!(kept.len() >= 6, "kept {kept:?}");
        assert_eq!(enc.omitted, with_huge.len() - kept.len());
        assert_eq!(
            enc.props.last().unwrap(),
            &("omitted".to_string(), enc.omitted.to_string())
        );
        for (k, v) in &enc.props[2..enc.props.len() - 1] {
            let original = &with_huge.iter().find(|(ok, _)| ok == k).unwrap().1;
            assert_eq!(v, original, "values are never cut");
        }
    }

    #[test]
    fn a_small_extra_after_a_big_one_still_fits() {
        let list = extras(&[("a", &"z".repeat(850)), ("b", "1")]);
        let enc = encode(Role::Peer, None, &list).unwrap();
        assert_eq!(enc.omitted, 1);
        assert!(enc.props.iter().any(|(k, v)| k == "b" && v == "1"));
    }

    #[test]
    fn bad_input_is_rejected() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let bad_extras: &[Pairs] = &[
            &[("Images", "x")],
            &[("a=b", "x")],
            &[("", "x")],
            &[("role", "peer")],
            &[("omitted", "3")],
            &[("a", "1"), ("a", "2")],
        ];
        for list in bad_extras {
            assert!(encode(Role::Seed, None, &extras(list)).is_err(), "{list:?}");
        }
        for swarm in ["xyz", "", "ab cd"] {
            assert!(encode(Role::Seed, Some(swarm), &[]).is_err(), "{swarm:?}");
        }
        let long = "a".repeat(SWARM_ID_MAX + 1);
        assert!(encode(Role::Seed, Some(&long), &[]).is_err());
    }

    #[test]
    fn foreign_or_unknown_roles_are_ignored() {
        assert!(decode([("swarm", "ab")]).is_none());
        assert!(decode([("role", "tracker")]).is_none());
        let dec = decode([("ROLE", "peer"), ("swarm", "not-hex"), ("x", "1")]).unwrap();
        assert_eq!(dec.role, Role::Peer);
        assert_eq!(dec.swarm, None);
        assert_eq!(dec.extras["x"], "1");
    }
}
