//! Teams: `namespace`, `key`, `access` and `audit`. Namespaces and their quotas are the host
//! admin's; a namespace's admins manage its keys.

use clap::{Args, Subcommand};
use http::Method;

use super::print_json;
use crate::api::{
    AuditLog, CreateKey, CreateNamespace, KeyCreated, KeyList, KeyView, NamespaceList,
    NamespaceView, SetAccess,
};
use crate::cli::ClientArgs;
use crate::cli::client::AdminClient;
use crate::cli::table;
use crate::cli::units::parse_duration;
use crate::model::{Access, DEFAULT_NAMESPACE, Quotas, QuotasPatch, Role};

/// Quota flags: a number sets the limit, `none` removes it.
#[derive(Debug, Args, Default)]
pub struct QuotaArgs {
    /// Functions in the namespace.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub functions: Option<Limit>,
    /// Published versions kept, over all its functions.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub versions: Option<Limit>,
    /// Invocations running at once over all its functions (per node); past it, 429.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub concurrency: Option<Limit>,
    /// Provisioned (always warm) instances over all its functions.
    #[arg(long, value_parser = parse_limit, value_name = "N|none")]
    pub provisioned: Option<Limit>,
    /// Linear memory per instance, in MiB.
    #[arg(long, value_parser = parse_limit, value_name = "MIB|none")]
    pub memory_mb: Option<Limit>,
    /// Bytes stored over all its buckets, e.g. 10Gi.
    #[arg(long, value_parser = parse_byte_limit, value_name = "SIZE|none")]
    pub bucket_bytes: Option<ByteLimit>,
}

impl QuotaArgs {
    fn patch(&self) -> QuotasPatch {
        QuotasPatch {
            functions: self.functions.map(|l| l.0),
            versions: self.versions.map(|l| l.0),
            concurrency: self.concurrency.map(|l| l.0),
            provisioned: self.provisioned.map(|l| l.0),
            memory_mb: self.memory_mb.map(|l| l.0),
            bucket_bytes: self.bucket_bytes.map(|l| l.0),
        }
    }
}

/// A quota flag's value: a limit, or none.
#[derive(Clone, Copy, Debug)]
pub struct Limit(Option<u32>);

/// A byte quota flag's value: a size, or none.
#[derive(Clone, Copy, Debug)]
pub struct ByteLimit(Option<u64>);

fn parse_byte_limit(text: &str) -> Result<ByteLimit, String> {
    if text == "none" {
        return Ok(ByteLimit(None));
    }
    crate::cli::units::parse_bytes(text).map(|n| ByteLimit(Some(n)))
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text == "none" {
        return Ok(Limit(None));
    }
    text.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("{text:?}: give a whole number, or `none` for no limit"))
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace (host admin token), optionally with quotas.
    Create {
        /// The namespace: a lowercase DNS label; its functions are NAME.NS.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List namespaces with their quotas and what they use (a key sees its own).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one namespace.
    Show {
        /// The namespace.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a namespace's quotas (host admin token): `--functions 20 --versions none`.
    Quota {
        /// The namespace.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an empty namespace and its keys (host admin token).
    Delete {
        /// The namespace (it must have no functions left).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key of --namespace (default: `default`) and print its secret, once.
    Create {
        /// admin (also manages the namespace's keys), deployer (deploy, publish, traffic,
        /// config), viewer (read only) or invoker (calls `access key` functions only).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// When it stops working, from now: e.g. 30d, 12h (default: never).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        expires: Option<std::time::Duration>,
        /// What the key is for, shown in listings (e.g. "CI of the cart team").
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the keys of --namespace: ids, roles, states; never secrets.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a key; the next request with it is refused.
    Revoke {
        /// The key's id, as `key list` shows it (not its secret).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The function.
    pub name: String,
    /// `public`: anyone who reaches the data plane; `key`: calls need an invoker key of the
    /// function's namespace in `Authorization: Bearer`, checked before any instance runs.
    #[arg(value_parser = parse_access)]
    pub access: Access,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?}: use admin, deployer, viewer or invoker"))
}

fn parse_access(text: &str) -> Result<Access, String> {
    Access::parse(text).ok_or_else(|| format!("{text:?}: use public or key"))
}

pub async fn namespace(command: NamespaceCommand) -> anyhow::Result<()> {
    match command {
        NamespaceCommand::Create {
            name,
            quotas,
            client,
        } => {
            let body = CreateNamespace {
                name,
                quotas: Quotas::default().merged(&quotas.patch()),
            };
            let created: NamespaceView = AdminClient::new(&client)?
                .send_json(Method::POST, "/v1/namespaces", &body)
                .await?;
            show_namespace(&client, created)
        }
        NamespaceCommand::List { client } => {
            let list: NamespaceList = AdminClient::new(&unscoped(&client))?
                .get("/v1/namespaces")
                .await?;
            if print_json(&client, &list)? {
                return Ok(());
            }
            show_namespaces(&list.namespaces);
            Ok(())
        }
        NamespaceCommand::Show { name, client } => {
            let ns: NamespaceView = AdminClient::new(&unscoped(&client))?
                .get(&format!("/v1/namespaces/{name}"))
                .await?;
            show_namespace(&client, ns)
        }
        NamespaceCommand::Quota {
            name,
            quotas,
            client,
        } => {
            let ns: NamespaceView = AdminClient::new(&unscoped(&client))?
                .send_json(
                    Method::PUT,
                    &format!("/v1/namespaces/{name}/quotas"),
                    &quotas.patch(),
                )
                .await?;
            show_namespace(&client, ns)
        }
        NamespaceCommand::Delete { name, client } => {
            let answer: serde_json::Value = AdminClient::new(&unscoped(&client))?
                .delete(&format!("/v1/namespaces/{name}"))
                .await?;
            if !print_json(&client, &answer)? {
                println!("deleted namespace {name}");
            }
            Ok(())
        }
    }
}

pub async fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            role,
            expires,
            description,
            client,
        } => {
            let body = CreateKey {
                role,
                description,
                expires_in_secs: expires.map(|d| d.as_secs().max(1)),
            };
            let path = format!("/v1/namespaces/{}/keys", namespace_of(&client));
            let created: KeyCreated = AdminClient::new(&unscoped(&client))?
                .send_json(Method::POST, &path, &body)
                .await?;
            if print_json(&client, &created)? {
                return Ok(());
            }
            println!("{}", created.secret);
            eprintln!(
                "key {} ({} of namespace {}): the line above is its secret, shown only now; \
                 store it where the caller reads it (FNHOST_TOKEN for the CLI, \
                 FNHOST_INVOKE_KEY for invoke)",
                created.key.id, created.key.role, created.key.namespace
            );
            Ok(())
        }
        KeyCommand::List { client } => {
            let path = format!("/v1/namespaces/{}/keys", namespace_of(&client));
            let list: KeyList = AdminClient::new(&unscoped(&client))?.get(&path).await?;
            if print_json(&client, &list)? {
                return Ok(());
            }
            show_keys(&list.keys);
            Ok(())
        }
        KeyCommand::Revoke { id, client } => {
            let key: KeyView = AdminClient::new(&unscoped(&client))?
                .delete(&format!("/v1/keys/{id}"))
                .await?;
            if !print_json(&client, &key)? {
                println!("revoked key {} of namespace {}", key.id, key.namespace);
            }
            Ok(())
        }
    }
}

pub async fn access(args: AccessArgs) -> anyhow::Result<()> {
    let answer: SetAccess = AdminClient::new(&args.client)?
        .send_json(
            Method::PUT,
            &format!("/v1/functions/{}/access", args.name),
            &SetAccess {
                access: args.access,
            },
        )
        .await?;
    if !print_json(&args.client, &answer)? {
        println!("{}: access {}", args.name, answer.access.as_str());
    }
    Ok(())
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let log: AuditLog = AdminClient::new(&args.client)?
        .get(&format!("/v1/audit?limit={}", args.limit))
        .await?;
    if print_json(&args.client, &log)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = log
        .entries
        .iter()
        .map(|e| {
            vec![
                time(e.at_ms),
                e.namespace.clone().unwrap_or_else(|| "-".into()),
                e.actor.clone(),
                e.status.to_string(),
                e.action.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["TIME (UTC)", "NAMESPACE", "ACTOR", "STATUS", "ACTION"],
            &rows
        )
    );
    Ok(())
}

/// The namespace a key command acts in.
fn namespace_of(client: &ClientArgs) -> String {
    client
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

/// Paths of namespace and key commands name their namespace themselves.
fn unscoped(client: &ClientArgs) -> ClientArgs {
    ClientArgs {
        namespace: None,
        ..client.clone()
    }
}

/// One namespace: its JSON with `--json`, else a table row.
fn show_namespace(client: &ClientArgs, namespace: NamespaceView) -> anyhow::Result<()> {
    if print_json(client, &namespace)? {
        return Ok(());
    }
    show_namespaces(&[namespace]);
    Ok(())
}

fn show_namespaces(namespaces: &[NamespaceView]) {
    let limit = |used: u64, limit: Option<u32>| limit_text(used, limit.map(u64::from));
    let rows: Vec<Vec<String>> = namespaces
        .iter()
        .map(|ns| {
            vec![
                ns.name.clone(),
                limit(ns.usage.functions, ns.quotas.functions),
                limit(ns.usage.versions, ns.quotas.versions),
                limit(ns.usage.concurrency, ns.quotas.concurrency),
                limit(ns.usage.provisioned, ns.quotas.provisioned),
                ns.quotas
                    .memory_mb
                    .map_or("-".into(), |mb| format!("{mb}Mi")),
                match (ns.usage.bucket_bytes, ns.quotas.bucket_bytes) {
                    (Some(used), limit) => limit_text(used, limit),
                    (None, Some(limit)) => format!("-/{limit}"),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NAMESPACE",
                "FUNCTIONS",
                "VERSIONS",
                "RUNNING",
                "PROVISIONED",
                "MEMORY/INSTANCE",
                "BUCKET BYTES"
            ],
            &rows
        )
    );
}

/// `used/limit`, or `used` with no limit.
fn limit_text(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(limit) => format!("{used}/{limit}"),
        None => used.to_string(),
    }
}

fn show_keys(keys: &[KeyView]) {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.role.to_string(),
                k.state.clone(),
                time(k.created_ms),
                k.expires_ms.map_or("never".into(), time),
                k.created_by.clone(),
                k.description.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "ROLE",
                "STATE",
                "CREATED (UTC)",
                "EXPIRES (UTC)",
                "BY",
                "DESCRIPTION"
            ],
            &rows
        )
    );
}

fn time(ms: i64) -> String {
    super::format_ms(ms)
}
