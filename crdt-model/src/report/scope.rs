//! What a reader of reports may see. HQ's own staff see the whole network; everyone else
//! sees only the merchant their site belongs to: its sites' rows, terminals, operators,
//! settlement lines and clearing entries. The rule is here, pure, so that every report
//! and settlement query of the node applies the same one.

use super::Dim;
use crate::docs::network::NetworkRegistry;
use crate::ids::{MerchantId, OperatorId, SiteId};

/// Who is reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything: HQ's administrators and finance staff, and the node's own console.
    Network,
    /// One merchant's figures only.
    Merchant(MerchantId),
}

/// Operator roles at HQ's own site that read the whole network.
const NETWORK_ROLES: [&str; 2] = ["admin", "finance"];

/// Why an operator may not read reports at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("operator {0} is not in the network registry")]
    UnknownOperator(OperatorId),
    #[error("operator {0}'s site {1} is not in the network registry, so it has no merchant")]
    NoMerchant(OperatorId, SiteId),
}

impl Scope {
    /// The scope of a registered operator: an admin or finance operator of HQ's site
    /// (`hq_site`) reads the network; any other operator only the merchant of their site.
    pub fn of_operator(
        reg: &NetworkRegistry,
        hq_site: &SiteId,
        op: &OperatorId,
    ) -> Result<Scope, ScopeError> {
        let info = reg
            .operators
            .get(op)
            .ok_or_else(|| ScopeError::UnknownOperator(op.clone()))?;
        if info.site == *hq_site && NETWORK_ROLES.contains(&info.role.as_str()) {
            return Ok(Scope::Network);
        }
        reg.sites
            .get(&info.site)
            .map(|s| Scope::Merchant(s.merchant.clone()))
            .ok_or_else(|| ScopeError::NoMerchant(op.clone(), info.site.clone()))
    }

    pub fn sees_merchant(&self, m: &MerchantId) -> bool {
        match self {
            Scope::Network => true,
            Scope::Merchant(mine) => mine == m,
        }
    }

    /// Whether a site's figures are visible. A site missing from the registry belongs to
    /// no merchant, so only the network sees it.
    pub fn sees_site(&self, reg: &NetworkRegistry, site: &SiteId) -> bool {
        match self {
            Scope::Network => true,
            Scope::Merchant(_) => merchant_of(reg, site).is_some_and(|m| self.sees_merchant(&m)),
        }
    }

    /// Whether a report row (a site, terminal or operator name) is visible.
    pub fn sees_row(&self, reg: &NetworkRegistry, dim: Dim, name: &str) -> bool {
        match self {
            Scope::Network => true,
            Scope::Merchant(_) => site_of(reg, dim, name).is_some_and(|s| self.sees_site(reg, &s)),
        }
    }
}

/// The site a report row's name belongs to, if the registry knows it.
pub fn site_of(reg: &NetworkRegistry, dim: Dim, name: &str) -> Option<SiteId> {
    match dim {
        Dim::Site => name.parse().ok(),
        Dim::Terminal => reg.terminals.get(&name.parse().ok()?).cloned(),
        Dim::Operator => reg
            .operators
            .get(&name.parse().ok()?)
            .map(|o| o.site.clone()),
    }
}

pub fn merchant_of(reg: &NetworkRegistry, site: &SiteId) -> Option<MerchantId> {
    reg.sites.get(site).map(|s| s.merchant.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::network::{OperatorInfo, SiteInfo};
    use crate::ids::TerminalId;

    fn reg() -> NetworkRegistry {
        let mut reg = NetworkRegistry::default();
        for (site, m) in [
            ("hq", "hq-desk"),
            ("north-1", "north"),
            ("south-1", "south"),
        ] {
            reg.sites.insert(
                site.parse().unwrap(),
                SiteInfo {
                    name: site.into(),
                    merchant: m.parse().unwrap(),
                    utc_offset_min: 480,
                },
            );
        }
        reg.terminals
            .insert(TerminalId([0, 0, 0, 0, 0, 1]), "north-1".parse().unwrap());
        reg.terminals
            .insert(TerminalId([0, 0, 0, 0, 0, 2]), "south-1".parse().unwrap());
        for (op, role, site) in [
            ("boss", "admin", "hq"),
            ("desk", "card-desk", "hq"),
            ("ann", "manager", "north-1"),
            ("bob", "admin", "south-1"),
        ] {
            reg.operators.insert(
                op.parse().unwrap(),
                OperatorInfo {
                    name: op.into(),
                    role: role.into(),
                    site: site.parse().unwrap(),
                },
            );
        }
        reg
    }

    #[test]
    fn only_hq_admins_and_finance_read_the_network() {
        let reg = reg();
        let hq: SiteId = "hq".parse().unwrap();
        let of = |op: &str| Scope::of_operator(&reg, &hq, &op.parse().unwrap());
        assert_eq!(of("boss"), Ok(Scope::Network));
        assert_eq!(of("desk"), Ok(Scope::Merchant("hq-desk".parse().unwrap())));
        assert_eq!(of("ann"), Ok(Scope::Merchant("north".parse().unwrap())));
        // An admin of a shop is still only that shop's merchant.
        assert_eq!(of("bob"), Ok(Scope::Merchant("south".parse().unwrap())));
        assert!(matches!(of("nobody"), Err(ScopeError::UnknownOperator(_))));
    }

    #[test]
    fn a_merchant_sees_its_own_rows_and_nothing_unregistered() {
        let reg = reg();
        let north = Scope::Merchant("north".parse().unwrap());
        assert!(north.sees_row(&reg, Dim::Site, "north-1"));
        assert!(!north.sees_row(&reg, Dim::Site, "south-1"));
        assert!(!north.sees_row(&reg, Dim::Site, "unknown-site"));
        assert!(north.sees_row(&reg, Dim::Terminal, "000000000001"));
        assert!(!north.sees_row(&reg, Dim::Terminal, "000000000002"));
        assert!(!north.sees_row(&reg, Dim::Terminal, "000000000009"));
        assert!(north.sees_row(&reg, Dim::Operator, "ann"));
        assert!(!north.sees_row(&reg, Dim::Operator, "bob"));
        assert!(!north.sees_row(&reg, Dim::Operator, "-"));
        assert!(Scope::Network.sees_row(&reg, Dim::Site, "unknown-site"));
    }
}
