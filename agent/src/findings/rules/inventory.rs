//! Inventory rules: calls to an endpoint no spec documents (`shadow-endpoint`; a suspected one,
//! hidden behind a documented path parameter, with the route it hides behind and why) and to
//! one a spec deprecates or retires (`zombie-endpoint`). One finding per endpoint.

use serde_json::json;

use super::{Context, Hit, evidence};
use crate::{findings::model::Rule, inventory::classify::Class};

pub fn check(ctx: &Context<'_>, out: &mut Vec<Hit>) {
    let rule = match ctx.endpoint.class {
        Class::Shadow | Class::SuspectedShadow => Rule::ShadowEndpoint,
        Class::Zombie => Rule::ZombieEndpoint,
        Class::Documented | Class::NoSpec => return,
    };
    let mut e = evidence([("class", json!(ctx.endpoint.class.name()))]);
    if let Some(status) = ctx.call.status {
        e.insert("status".into(), json!(status));
    }
    if let Some(file) = &ctx.endpoint.spec_file {
        e.insert("spec_file".into(), json!(&**file));
    }
    if let Some(suspicion) = &ctx.endpoint.suspected {
        e.insert("documented_route".into(), json!(suspicion.documented_route));
        e.insert("reason".into(), json!(suspicion.reason));
    }
    out.push(ctx.hit(rule, rule.default_severity(), e));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::findings::{
        auth::CallAuth,
        rules::tests::{call, hits},
    };

    fn rules(class: Class) -> Vec<Rule> {
        let mut c = call("GET", "/u/1", "/u/{id}", "web", 200);
        let mut endpoint = (*c.endpoint.clone().unwrap()).clone();
        endpoint.class = class;
        c.endpoint = Some(Arc::new(endpoint));
        hits(&c, &CallAuth::default(), check)
            .into_iter()
            .map(|h| h.rule)
            .collect()
    }

    #[test]
    fn shadow_and_zombie_endpoints_only() {
        assert_eq!(rules(Class::Shadow), [Rule::ShadowEndpoint]);
        assert_eq!(rules(Class::SuspectedShadow), [Rule::ShadowEndpoint]);
        assert_eq!(rules(Class::Zombie), [Rule::ZombieEndpoint]);
        assert_eq!(rules(Class::Documented), []);
        assert_eq!(rules(Class::NoSpec), []);
    }
}
