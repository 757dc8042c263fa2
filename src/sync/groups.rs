//! Step 7 of a run, after the push and the managers: the groups of `[groups]` (a mapping's
//! groups from attribute values). Gathers the people as the platform now holds them (the
//! snapshot and the content last pushed), the groups this connector created (the state) with
//! their members (the platform), decides with `plan::groups::plan`, and sends the creates and
//! member PATCHes. A dry run gathers and decides the same way from the state its plan would
//! leave (`Overlay`), and sends nothing.

use std::collections::{BTreeMap, HashMap};

use super::{Ctx, MAX_REPORTED_ERRORS, RunError, Tally};
use crate::model::User;
use crate::plan::groups::{self, Current, Desired, GroupOp, GroupPlan, GroupRule, GroupsReport, Owned};
use crate::plan::{Op, Plan};
use crate::platform::scim::ScimClient;
use crate::state::{CreatedGroup, StateStore};

/// What a plan changes of the people (a dry run's, not sent): unique id → the content it
/// would leave on the platform (None: deactivated or deleted, in no group).
#[derive(Debug, Default)]
pub(super) struct Overlay(Vec<(String, Option<User>)>);

impl Overlay {
    /// The people a plan writes, as the groups see them. Empty without `[groups]`.
    pub(super) fn of(rule: Option<&GroupRule>, plan: &Plan) -> Overlay {
        if rule.is_none() {
            return Overlay::default();
        }
        Overlay(
            plan.ops
                .iter()
                .map(|op| match op {
                    Op::Create { user } | Op::Update { user, .. } => (user.external_id.to_string(), Some((**user).clone())),
                    Op::Deactivate { external_id, .. } | Op::Delete { external_id, .. } => (external_id.clone(), None),
                })
                .collect(),
        )
    }
}

/// The externalId a created group carries: it tells this connector's group from anyone's
/// group of the same name when the state does not (a create whose answer was lost).
fn marker(connector: &str, display_name: &str) -> String {
    format!("rostersync:{connector}:{display_name}")
}

impl<S: StateStore> Ctx<'_, S> {
    /// The groups step. Nothing without `[groups]`, or for an `--only` run (a few people's
    /// push is no sync of the file, and the groups are the whole population's). A dry run
    /// reports the plan and sends nothing. Returns how many group writes failed (the run
    /// then fails as for the people's, and the next run takes the same file again).
    pub(super) async fn sync_groups(&self, t: &mut Tally, platform: Option<&ScimClient>, overlay: Overlay) -> Result<u64, RunError> {
        let Some(rule) = self.conn.mapping.groups.as_ref() else { return Ok(0) };
        // A real `--only` run sends nothing to the groups; a dry one (`explain`) shows the
        // people's part of the plan.
        if self.opts.only.is_some() && !self.opts.dry_run {
            return Ok(0);
        }
        let Some(platform) = platform else {
            t.note("[groups]: the platform could not be reached, so the group changes are not shown".into());
            return Ok(0);
        };
        let (desired, known) = self.desired_groups(rule, overlay).await?;
        let records = self.store.created_groups(&self.conn.name).await?;
        let first = records.is_empty();
        let current = self.current_groups(platform, records, &desired).await?;
        let announced = platform.capabilities().bulk.map(|b| b.max_operations);
        let mut plan = groups::plan(&desired, &current, &known, rule.chunk_size(announced));
        if let Some(only) = &self.opts.only {
            let id_rule = self.conn.mapping.id_rule();
            let keys: std::collections::HashSet<String> = only.iter().map(|x| id_rule.key(x).into_owned()).collect();
            plan = plan.only(|x| keys.contains(id_rule.key(x).as_ref()));
        }
        let mut report = GroupsReport {
            created: plan.creates(),
            added: plan.added,
            removed: plan.removed,
            conflicts: plan.conflicts.clone(),
            changes: plan.changes(MAX_REPORTED_ERRORS),
            failed: 0,
        };
        for name in &plan.conflicts {
            t.note(format!(
                "[groups]: a group named \"{name}\" exists on the platform and was not created by this connector; it is left alone and its people get no group. Rename one of them (or change [groups] prefix)"
            ));
        }
        let over = groups::over_limit(&plan, known.len() as u64, first, self.conn.sync.budget.updates);
        if let Some(over) = over.filter(|_| !self.opts.allow_mass_change && self.opts.apply_plan.is_none()) {
            t.report.stopped_by = Some("group_changes".into());
            t.report.groups = Some(report);
            return Err(RunError::GroupsHeld { connector: self.conn.name.clone(), over: Box::new(over) });
        }
        if !self.opts.dry_run {
            report.failed = self.apply_groups(t, platform, plan).await?;
        }
        let failed = report.failed;
        t.report.groups = Some(report);
        Ok(failed)
    }

    /// Who should be in which group: the connector's active people as the platform holds
    /// them (with a dry run's plan laid over), and their unique ids by platform id.
    async fn desired_groups(&self, rule: &GroupRule, overlay: Overlay) -> Result<(Desired, HashMap<String, String>), RunError> {
        let snapshot = self.store.snapshot(&self.conn.name).await?;
        let known: HashMap<String, String> = snapshot.iter().map(|(x, e)| (e.platform_id.clone(), x.clone())).collect();
        let changed: HashMap<String, Option<User>> = overlay.0.into_iter().collect();
        let ids: Vec<&str> = snapshot.iter().filter(|(x, e)| e.active && !changed.contains_key(*x)).map(|(x, _)| x.as_str()).collect();
        let contents = self.store.contents(&self.conn.name, &ids).await?;
        // (unique id, platform id — None for a dry run's new person —, content)
        let account = |x: &str| snapshot.get(x).map(|e| e.platform_id.clone());
        let people: Vec<(String, Option<String>, User)> = contents
            .into_iter()
            .chain(changed.into_iter().filter_map(|(x, u)| u.map(|u| (x, u))))
            .map(|(x, u)| {
                let p = account(&x);
                (x, p, u)
            })
            .collect();
        drop(snapshot);
        let desired = Desired::of(rule, people.iter().map(|(x, p, u)| (x.as_str(), p.as_deref(), u)));
        Ok((desired, known))
    }

    /// The groups as the platform holds them: this connector's (recorded, with their members;
    /// one deleted by hand is forgotten and made again), and whether each name it needs is
    /// held by a group it did not create. A group found by name that carries this
    /// connector's marker is its own (a create whose answer was lost, or a lost state).
    async fn current_groups(&self, platform: &ScimClient, records: Vec<CreatedGroup>, desired: &Desired) -> Result<Current, RunError> {
        let mut current = Current::default();
        for r in records {
            match platform.group_members(&self.budget, &r.platform_id).await? {
                Some(members) => {
                    current.owned.insert(r.display_name, Owned { platform_id: r.platform_id, members });
                }
                None if self.opts.dry_run => {}
                None => {
                    tracing::info!(group = %r.display_name, "a group this connector created is gone from the platform; forgotten");
                    self.store.forget_group(&self.conn.name, &r.display_name).await?;
                }
            }
        }
        let missing: Vec<&String> = desired.groups.keys().filter(|n| !current.owned.contains_key(*n)).collect();
        for name in missing {
            let found = platform.find_groups(&self.budget, name).await?;
            let mark = marker(&self.conn.name, name);
            match found.iter().find(|g| g.external_id.as_deref() == Some(mark.as_str())) {
                Some(ours) if found.len() == 1 => {
                    let members = platform.group_members(&self.budget, &ours.platform_id).await?.unwrap_or_default();
                    self.record(name, &ours.platform_id).await?;
                    current.owned.insert(name.clone(), Owned { platform_id: ours.platform_id.clone(), members });
                }
                _ if found.is_empty() => {}
                _ => {
                    current.foreign.insert(name.clone());
                }
            }
        }
        Ok(current)
    }

    /// Records a group as this connector's (not in a dry run, which writes nothing).
    async fn record(&self, name: &str, platform_id: &str) -> Result<(), RunError> {
        if self.opts.dry_run {
            return Ok(());
        }
        let prefix = self.conn.mapping.groups.as_ref().map(|g| g.prefix.as_str()).unwrap_or_default();
        let value = name.strip_prefix(prefix).unwrap_or(name).to_string();
        let group =
            CreatedGroup { display_name: name.to_string(), value, platform_id: platform_id.to_string(), created_at: self.clock.now() };
        self.store.record_group(&self.conn.name, &group).await?;
        Ok(())
    }

    /// Sends the plan in order: each create (recorded at once), then its members, chunk by
    /// chunk. A failed write is noted and counted; a group whose create failed gets no
    /// PATCH. Returns how many writes failed.
    async fn apply_groups(&self, t: &mut Tally, platform: &ScimClient, plan: GroupPlan) -> Result<u64, RunError> {
        let mut created: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut failed = 0u64;
        for op in plan.ops {
            match op {
                GroupOp::Create { display_name } => {
                    let id = match platform.create_group(&self.budget, &display_name, &marker(&self.conn.name, &display_name)).await? {
                        Ok(id) => {
                            self.record(&display_name, &id).await?;
                            Some(id)
                        }
                        Err(f) => {
                            failed += 1;
                            t.note(format!("[groups]: could not create the group \"{display_name}\": {}", f.message));
                            None
                        }
                    };
                    created.insert(display_name, id);
                }
                GroupOp::Members { display_name, platform_id, add, remove } => {
                    let Some(group_id) = platform_id.or_else(|| created.get(&display_name).cloned().flatten()) else { continue };
                    let add: Vec<&str> = add.iter().filter_map(|m| m.platform_id.as_deref()).collect();
                    let remove: Vec<&str> = remove.iter().filter_map(|m| m.platform_id.as_deref()).collect();
                    if let Err(f) = platform.patch_members(&self.budget, &group_id, &add, &remove).await? {
                        failed += 1;
                        t.note(format!("[groups]: could not change the members of \"{display_name}\": {}", f.message));
                    }
                }
            }
        }
        Ok(failed)
    }
}
