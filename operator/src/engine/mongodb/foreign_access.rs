//! The access check on a MongoDB server: who else reaches a service's database, what is
//! revoked, what is left and reported (the decisions are in [`super::access_plan`]).

use std::collections::BTreeMap;

use mongodb::bson::{Document, doc};

use super::access_plan::{
    ADMIN_DATABASE, AccessPlan, RoleInfo, RoleName, exempt_from_access_check,
    inherited_custom_roles, plan_access, remaining_access, roles_of, roles_to_look_up, users_of,
};
use super::{MongoEngine, command};
use crate::engine::{EngineError, ProvisionReport, ServerNames};

impl MongoEngine {
    /// Revokes from every other user the roles that reach the service's database (never a
    /// built-in role of another database) and returns the users that can still reach it,
    /// measured from the server. A fixed number of reads however many users there are: every
    /// user with its roles, the privileges of the roles they hold on other databases (and, if
    /// needed, of the custom roles those inherit), and the privileges of the users the plan
    /// names; plus one revocation per user that had something revoked.
    pub(super) async fn check_foreign_access(
        &self,
        names: &ServerNames,
        report: &mut ProvisionReport,
    ) -> Result<Vec<String>, EngineError> {
        let admin = self.client.database(ADMIN_DATABASE);
        let reply = admin
            .run_command(doc! { "usersInfo": { "forAllDBs": true } })
            .await
            .map_err(command("listing users"))?;
        let users: Vec<_> = users_of(&reply)
            .into_iter()
            .filter(|u| !exempt_from_access_check(&u.user, &u.db, names, &self.admin.username))
            .collect();
        let mut known = self
            .roles_info(&roles_to_look_up(&users, &names.database))
            .await?;
        let inherited = inherited_custom_roles(&known, &names.database);
        known.extend(self.roles_info(&inherited).await?);
        let plans = plan_access(&users, &known, &names.database);
        for plan in &plans {
            self.revoke(plan, report).await?;
        }
        self.measure(&plans, &names.database).await
    }

    /// The privileges of `roles` (none asked for, none read).
    async fn roles_info(
        &self,
        roles: &[RoleName],
    ) -> Result<BTreeMap<RoleName, RoleInfo>, EngineError> {
        if roles.is_empty() {
            return Ok(BTreeMap::new());
        }
        let asked: Vec<Document> = roles
            .iter()
            .map(|r| doc! { "role": &r.role, "db": &r.db })
            .collect();
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(doc! { "rolesInfo": asked, "showPrivileges": true })
            .await
            .map_err(command("reading roles"))?;
        Ok(roles_of(&reply))
    }

    async fn revoke(
        &self,
        plan: &AccessPlan,
        report: &mut ProvisionReport,
    ) -> Result<(), EngineError> {
        if plan.revoke.is_empty() {
            return Ok(());
        }
        let roles: Vec<Document> = plan
            .revoke
            .iter()
            .map(|r| doc! { "role": &r.role, "db": &r.db })
            .collect();
        self.client
            .database(&plan.user.db)
            .run_command(doc! { "revokeRolesFromUser": &plan.user.user, "roles": roles })
            .await
            .map_err(command("revoking a role from a user"))?;
        let revoked: Vec<String> = plan.revoke.iter().map(RoleName::to_string).collect();
        report.repaired.push(format!(
            "revoked role(s) {} reaching the database from user {}",
            revoked.join(", "),
            plan.user.qualified()
        ));
        Ok(())
    }

    /// The users of `plans` whose privileges still reach `database`, read after revocation.
    async fn measure(
        &self,
        plans: &[AccessPlan],
        database: &str,
    ) -> Result<Vec<String>, EngineError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let checked: Vec<Document> = plans
            .iter()
            .map(|p| doc! { "user": &p.user.user, "db": &p.user.db })
            .collect();
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(doc! { "usersInfo": checked, "showPrivileges": true })
            .await
            .map_err(command("reading users' privileges"))?;
        Ok(remaining_access(&reply, plans, database))
    }
}
