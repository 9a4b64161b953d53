//! Inventory rules: calls to an endpoint no spec documents (`shadow-endpoint`) and to one a
//! spec deprecates or retires (`zombie-endpoint`). One finding per endpoint.

use serde_json::json;

use super::{Context, Hit, evidence};
use crate::{findings::model::Rule, inventory::classify::Class};

pub fn check(ctx: &Context<'_>, out: &mut Vec<Hit>) {
    let rule = match ctx.endpoint.class {
        Class::Shadow => Rule::ShadowEndpoint,
        Class::Zombie => Rule::ZombieEndpoint,
        Class::Documented | Class::NoSpec => return,
    };
    let mut e = evidence([("class", json!(ctx.endpoint.class.name()))]);
    if let Some(status) = ctx.call.status {
        e.insert("status".into(), json!(status));
    }
    if let Some(file) = &ctx.endpoint.spec_file {
        e.insert("spec_file".into(), json!(file));
    }
    out.push(ctx.hit(rule, rule.default_severity(), e));
}
