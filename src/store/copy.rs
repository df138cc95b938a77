//! `store copy`: a SQLite store moved whole into an empty PostgreSQL store, in one
//! transaction (a copy that fails leaves the target as empty as it found it).
//!
//! Both schemas have the same tables and columns at the same version (see `pg::schema`), so
//! rows move column by column: SQLite's integers into `BIGINT`, its text into `TEXT`.

use std::path::Path;

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::pg::Pg;
use super::{Backend, Store, StoreError};

/// The tables in the order their foreign keys need; `locks` is left out (a lock belongs to a
/// process of the old store, none of which holds anything in the new one).
const TABLES: &[&str] = &[
    "leases",
    "lease_events",
    "runs",
    "walks",
    "resources",
    "findings",
    "finding_events",
    "outbox",
    "audit_log",
    "audit_head",
    "audit_chain",
    "spend",
    "spend_days",
    "registry_alive",
    "restore_guard",
];

/// Rows per `INSERT … SELECT FROM UNNEST` (one array per column).
const BATCH: usize = 2000;

/// What was copied, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source is not a SQLite store")]
    SourceNotSqlite,
    #[error("the target is not a PostgreSQL store")]
    TargetNotPostgres,
    #[error("the target already holds {rows} rows in `{table}`: copy into an empty database")]
    TargetNotEmpty { table: &'static str, rows: i64 },
    #[error("`{table}` has a column `{column}` of type {kind} the copy does not know")]
    UnknownColumn {
        table: &'static str,
        column: String,
        kind: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        CopyError::Store(StoreError::Sql(e))
    }
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> Self {
        CopyError::Store(StoreError::Pg(e))
    }
}

/// One column's values of a batch, typed for PostgreSQL.
enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
}

impl Store {
    /// Copies every row of the SQLite store `from` (opened, and migrated, by the caller) into
    /// this PostgreSQL store, which must be empty. `progress` hears (table, rows copied, rows
    /// in the table) after each batch.
    pub async fn copy_from(
        &self,
        from: &Store,
        path: &Path,
        progress: &(dyn Fn(&str, u64, u64) + Sync),
    ) -> Result<Copied, CopyError> {
        let Backend::Postgres(pg) = &self.backend else {
            return Err(CopyError::TargetNotPostgres);
        };
        let Backend::Sqlite { .. } = &from.backend else {
            return Err(CopyError::SourceNotSqlite);
        };
        copy(pg, path, progress).await
    }
}

async fn copy(
    pg: &Pg,
    path: &Path,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Copied, CopyError> {
    let mut c = pg.conn().await?;
    let mut tx = c.begin().await?;
    // Nothing else may write while the copy runs (a daemon pointed at the target too early).
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        TABLES.join(", ")
    ))
    .await?;
    for table in TABLES {
        let rows: i64 = tx
            .query_dynamic(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .await?[0]
            .try_get(0)
            .map_err(StoreError::from)?;
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty { table, rows });
        }
    }
    let source = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // One read transaction: every table as of one moment.
    source.execute_batch("BEGIN")?;
    let mut copied = Vec::new();
    for &table in TABLES {
        let kinds = column_kinds(&mut tx, table).await?;
        let names: Vec<String> = kinds.iter().map(|(n, _)| n.clone()).collect();
        // `rolled_into` points at a later row of the same table: written after all of them.
        let deferred: Vec<&str> = if table == "outbox" {
            vec!["rolled_into"]
        } else {
            vec![]
        };
        let select = format!(
            "SELECT {} FROM {table} ORDER BY rowid",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let select = if table == "spend" || table == "spend_days" {
            // WITHOUT ROWID tables: their key order.
            select.replace(" ORDER BY rowid", "")
        } else {
            select
        };
        let total: i64 =
            source.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        let total = u64::try_from(total).unwrap_or(0);
        progress(table, 0, total);
        let mut stmt = source.prepare(&select)?;
        let mut rows = stmt.query([])?;
        let mut n = 0u64;
        let mut later: Vec<(i64, i64)> = Vec::new();
        loop {
            let mut cols: Vec<Column> = kinds
                .iter()
                .map(|(_, k)| match k {
                    Kind::Int => Column::Int(Vec::with_capacity(BATCH)),
                    Kind::Text => Column::Text(Vec::with_capacity(BATCH)),
                })
                .collect();
            let mut in_batch = 0;
            while in_batch < BATCH {
                let Some(row) = rows.next()? else { break };
                for (i, col) in cols.iter_mut().enumerate() {
                    let v: Value = row.get(i)?;
                    if deferred.contains(&names[i].as_str())
                        && let Value::Integer(to) = v
                    {
                        let id: i64 = row.get(0)?;
                        later.push((id, to));
                        push(col, Value::Null, table, &names[i])?;
                        continue;
                    }
                    push(col, v, table, &names[i])?;
                }
                in_batch += 1;
            }
            if in_batch == 0 {
                break;
            }
            insert(&mut tx, table, &names, &kinds, &cols).await?;
            n += in_batch as u64;
            progress(table, n, total);
        }
        for (id, to) in later {
            tx.query_dynamic(
                "UPDATE outbox SET rolled_into = $2 WHERE id = $1",
                &[&id, &to],
            )
            .await?;
        }
        // Identity columns continue after the highest copied id.
        if names.first().map(String::as_str) == Some("id") && kinds[0].1 == Kind::Int {
            tx.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false)
                 FROM {table} WHERE pg_get_serial_sequence('{table}', 'id') IS NOT NULL"
            ))
            .await?;
        }
        copied.push((table, n));
    }
    tx.commit().await?;
    Ok(Copied { tables: copied })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}

/// The target's columns of `table`, in order, with the kind each takes.
async fn column_kinds(
    tx: &mut super::pg::Tx<'_>,
    table: &'static str,
) -> Result<Vec<(String, Kind)>, CopyError> {
    let rows = tx
        .query_dynamic(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get(0).map_err(StoreError::from)?;
            let kind: String = r.try_get(1).map_err(StoreError::from)?;
            match kind.as_str() {
                "bigint" => Ok((name, Kind::Int)),
                "text" => Ok((name, Kind::Text)),
                _ => Err(CopyError::UnknownColumn {
                    table,
                    column: name,
                    kind,
                }),
            }
        })
        .collect()
}

fn push(col: &mut Column, v: Value, table: &'static str, name: &str) -> Result<(), CopyError> {
    let wrong = |what: &str| {
        CopyError::Store(StoreError::Corrupt(format!(
            "{table}.{name}: {what} where the schema has another type"
        )))
    };
    match (col, v) {
        (Column::Int(c), Value::Null) => c.push(None),
        (Column::Text(c), Value::Null) => c.push(None),
        (Column::Int(c), Value::Integer(i)) => c.push(Some(i)),
        (Column::Text(c), Value::Text(t)) => c.push(Some(t)),
        (_, Value::Real(_)) => return Err(wrong("a float")),
        (_, Value::Blob(_)) => return Err(wrong("a blob")),
        (Column::Int(_), Value::Text(_)) => return Err(wrong("text")),
        (Column::Text(_), Value::Integer(_)) => return Err(wrong("an integer")),
    }
    Ok(())
}

async fn insert(
    tx: &mut super::pg::Tx<'_>,
    table: &str,
    names: &[String],
    kinds: &[(String, Kind)],
    cols: &[Column],
) -> Result<(), CopyError> {
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = kinds
        .iter()
        .enumerate()
        .map(|(i, (_, k))| match k {
            Kind::Int => format!("${}::bigint[]", i + 1),
            Kind::Text => format!("${}::text[]", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ");
    // OVERRIDING SYSTEM VALUE keeps the copied ids (identity columns would make new ones).
    let sql = format!(
        "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE SELECT * FROM UNNEST({arrays})"
    );
    let params: Vec<&(dyn ToSql + Sync)> = cols
        .iter()
        .map(|c| match c {
            Column::Int(v) => v as &(dyn ToSql + Sync),
            Column::Text(v) => v as &(dyn ToSql + Sync),
        })
        .collect();
    tx.query_dynamic(&sql, &params).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKey;
    use crate::model::{Decision, ReapMode};
    use crate::resource::AuditEntry;

    /// Every row of `table` as text, sorted: the same on both engines when nothing was lost.
    async fn rows(store: &Store, table: &str) -> Vec<Vec<Option<String>>> {
        let mut rows = store
            .text_rows_for_test(&format!("SELECT * FROM {table}"))
            .await;
        rows.sort();
        rows
    }

    /// A SQLite store with a row in every table (an outbox row rolled into a later one, an
    /// audit chain of three records) moves whole: every row of every table the same, the
    /// chain verifying with the same head, new rows numbered after the copied ones; and a
    /// second copy into the now full target is refused without touching it.
    #[tokio::test]
    async fn a_sqlite_store_moves_whole_into_postgres() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.db");
        let key = AuditKey::from_hex(&"5a".repeat(32)).expect("key");
        let source = Store::open(&path).await.expect("opens");
        let k = key.clone();
        source
            .writer()
            .expect("sqlite")
            .write(move |c| {
                c.execute_batch(
                    "INSERT INTO leases (id, project, task, owner, principal, created_at,
                         expires_at, ends_at, idem_key)
                     VALUES ('01a0', 'web', 't', 'o@example.com', 'ci', 1, 2, 2, 'k1');
                     INSERT INTO lease_events (id, lease_id, at, kind, principal, detail)
                     VALUES (5, '01a0', 2, 'released', 'ci', '{}');
                     INSERT INTO runs (id, task, trigger, started_at, ended_at, outcome)
                     VALUES ('r1', 'scan', 'schedule', 5, 6, 'ok');
                     INSERT INTO walks (id, run_id, account, region, started_at, ended_at,
                         outcome, pages, resources)
                     VALUES (41, 'r1', '123456789012', 'eu-west-1', 5, 6, 'complete', 1, 1);
                     INSERT INTO resources (arn, account, region, resource_type, tags,
                         first_seen, last_seen, verdict, reason, action, grace_s, last_run,
                         lease_id)
                     VALUES ('arn:aws:sqs:eu-west-1:123456789012:q', '123456789012',
                         'eu-west-1', 'sqs:queue', '{}', 5, 6, 'expired', 'x', 'reap', 0, 'r1',
                         '01a0');
                     INSERT INTO findings (id, arn, verdict, action, reason, account, region,
                         resource_type, opened_at, updated_at, skip_count)
                     VALUES (7, 'arn:aws:sqs:eu-west-1:123456789012:q', 'expired', 'reap',
                         'x', '123456789012', 'eu-west-1', 'sqs:queue', 5, 6, 2);
                     INSERT INTO finding_events (id, finding_id, run_id, at, kind, verdict,
                         detail)
                     VALUES (9, 7, 'r1', 5, 'opened', 'expired', 'x');
                     INSERT INTO outbox (id, kind, recipient, dedupe_key, payload, created_at)
                     VALUES (3, 'notice', 'o@example.com', 'n1', '{}', 5),
                            (4, 'digest', 'o@example.com', 'd1', '{}', 6);
                     UPDATE outbox SET rolled_into = 4 WHERE id = 3;
                     INSERT INTO spend (day, dimension, key, region, micro_usd)
                     VALUES ('2026-12-01', 'task', 't', 'eu-west-1', 1250000);
                     INSERT INTO spend_days (dimension, day, estimated, final, fetched_at)
                     VALUES ('task', '2026-12-01', 0, 1, 7);
                     INSERT INTO registry_alive (id, at) VALUES (1, 8);
                     INSERT INTO restore_guard (id, clean_passes) VALUES (1, 2);
                     INSERT INTO locks (name, holder, host, pid, what, acquired_at, expires_at)
                     VALUES ('act', 'h', 'host', 1, 'pass', 1, 2);",
                )?;
                for i in 0..3 {
                    super::super::chain::append(
                        c,
                        &k,
                        &AuditEntry {
                            at: chrono::DateTime::from_timestamp_millis(10 + i).expect("t"),
                            run_id: Some("r1".into()),
                            actor: "scheduler".into(),
                            mode: ReapMode::Pass,
                            arn: "arn:aws:sqs:eu-west-1:123456789012:q".into(),
                            lease_id: Some("01a0".into()),
                            verdict: Some("expired".into()),
                            decision: Decision::Deleted,
                            detail: format!("record {i}"),
                        },
                    )?;
                }
                Ok::<(), StoreError>(())
            })
            .await
            .expect("rows in every table");

        let target = Store::open_test_postgres().await;
        let heard = std::sync::Mutex::new(Vec::new());
        let copied = target
            .copy_from(&source, &path, &|t, n, of| {
                heard.lock().expect("lock").push((t.to_owned(), n, of))
            })
            .await
            .expect("copies");
        let heard = heard.into_inner().expect("lock");
        let Backend::Postgres(pg) = &target.backend else {
            panic!("postgres")
        };
        for &(table, n) in &copied.tables {
            let want = rows(&source, table).await;
            assert_eq!(n as usize, want.len(), "{table}");
            assert!(!want.is_empty(), "{table} has a row to copy");
            assert_eq!(rows(&target, table).await, want, "{table}");
            // Progress starts at 0 and ends at the table's count.
            let of_table: Vec<(u64, u64)> = heard
                .iter()
                .filter(|(t, _, _)| t == table)
                .map(|(_, n, of)| (*n, *of))
                .collect();
            assert_eq!(of_table.first(), Some(&(0, n)), "{table}: {heard:?}");
            assert_eq!(of_table.last(), Some(&(n, n)), "{table}: {heard:?}");
        }
        assert!(
            !copied.tables.iter().any(|(t, _)| *t == "locks"),
            "a lock belongs to a process of the old store"
        );

        // New rows are numbered after the copied ones.
        let mut c = pg.conn().await.expect("conn");
        let next: i64 = c
            .query_one(
                "INSERT INTO outbox (kind, dedupe_key, payload, created_at)
                 VALUES ('notice', 'n2', '{}', 9) RETURNING id",
                &[],
            )
            .await
            .expect("a new row")
            .get(0);
        assert_eq!(next, 5);
        drop(c);

        // A second copy finds rows and writes nothing.
        let again = target
            .copy_from(&source, &path, &|_, _, _| {})
            .await
            .expect_err("the target is not empty");
        assert!(
            matches!(
                again,
                CopyError::TargetNotEmpty {
                    table: "leases",
                    rows: 1
                }
            ),
            "{again:?}"
        );
        assert_eq!(rows(&target, "outbox").await.len(), 3);
    }
}
