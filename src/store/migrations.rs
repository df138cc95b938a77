//! Append-only schema migrations. Never edit a shipped entry: add a new one at the end.
//! `PRAGMA user_version` records how many have been applied.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: leases. Times are UTC milliseconds since the epoch. `ends_at` is derived (the earlier
    // of expiry and heartbeat deadline) and kept so state queries stay index-only.
    "CREATE TABLE leases (
        id                   TEXT PRIMARY KEY,
        project              TEXT NOT NULL,
        task                 TEXT NOT NULL,
        owner                TEXT NOT NULL,
        principal            TEXT NOT NULL,
        created_at           INTEGER NOT NULL,
        expires_at           INTEGER NOT NULL,
        heartbeat_interval_s INTEGER,
        last_heartbeat_at    INTEGER,
        released_at          INTEGER,
        ends_at              INTEGER NOT NULL,
        labels               TEXT NOT NULL DEFAULT '{}',
        regions              TEXT NOT NULL DEFAULT '[]'
    ) STRICT;
    CREATE INDEX leases_by_project_state ON leases (project, released_at, ends_at);
    CREATE INDEX leases_by_owner ON leases (owner);",
    // 2: the audit pass: runs of tasks, walks of (account, region), resources with their latest
    // evaluation, findings and their transitions.
    "CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        task        TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER,
        outcome     TEXT,
        summary     TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX runs_by_task ON runs (task, started_at);
    CREATE TABLE walks (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL REFERENCES runs (id),
        account     TEXT NOT NULL,
        region      TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        reason      TEXT,
        pages       INTEGER NOT NULL,
        resources   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX walks_by_run ON walks (run_id);
    CREATE TABLE resources (
        arn            TEXT PRIMARY KEY,
        account        TEXT NOT NULL,
        region         TEXT NOT NULL,
        resource_type  TEXT NOT NULL,
        tags           TEXT NOT NULL,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        gone_at        INTEGER,
        state          TEXT,
        verdict        TEXT NOT NULL,
        reason         TEXT NOT NULL,
        project        TEXT,
        action         TEXT NOT NULL,
        grace_s        INTEGER NOT NULL,
        lease_id       TEXT,
        lease_ended_at INTEGER,
        last_run       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX resources_by_scope ON resources (account, region, last_run);
    CREATE TABLE findings (
        id             INTEGER PRIMARY KEY,
        arn            TEXT NOT NULL REFERENCES resources (arn),
        verdict        TEXT NOT NULL,
        action         TEXT NOT NULL,
        reason         TEXT NOT NULL,
        project        TEXT,
        lease_id       TEXT,
        account        TEXT NOT NULL,
        region         TEXT NOT NULL,
        resource_type  TEXT NOT NULL,
        opened_at      INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        resolved_at    INTEGER,
        resolution     TEXT
    ) STRICT;
    CREATE UNIQUE INDEX findings_open_by_arn ON findings (arn) WHERE resolved_at IS NULL;
    CREATE TABLE finding_events (
        id          INTEGER PRIMARY KEY,
        finding_id  INTEGER NOT NULL REFERENCES findings (id),
        run_id      TEXT,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        detail      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX finding_events_by_finding ON finding_events (finding_id);",
    // 3: every pass rewrites `last_run` of every resource it sees; indexing it made each of those
    // writes move an index entry too. A walk's gone-marking scans its (account, region) instead.
    // From here on `resources.tags` holds `Tags::packed` text instead of JSON (no DDL needed;
    // readers accept both, since gone rows keep what they last had).
    "DROP INDEX resources_by_scope;
    CREATE INDEX resources_by_scope ON resources (account, region);",
    // 4: the reaper. A finding whose action is `reap` carries its deletion deadline and its
    // attempts; `reap_state` is `deleting` from just before a delete call until its outcome is
    // recorded (a crash in between is found and settled by the next pass). The outbox holds
    // notifications until the mailer sends them; `dedupe_key` makes queuing idempotent. The
    // audit log is append-only and hash-chained; `audit_head` holds the last record's seq and
    // hash so a removed tail is noticed too.
    "ALTER TABLE findings ADD COLUMN deadline INTEGER;
    ALTER TABLE findings ADD COLUMN reap_state TEXT;
    ALTER TABLE findings ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE findings ADD COLUMN next_attempt_at INTEGER;
    ALTER TABLE findings ADD COLUMN last_error TEXT;
    ALTER TABLE findings ADD COLUMN last_decision TEXT;
    CREATE INDEX findings_to_reap ON findings (deadline) WHERE resolved_at IS NULL AND deadline IS NOT NULL;
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,
        recipient       TEXT,
        dedupe_key      TEXT NOT NULL UNIQUE,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        sent_at         INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        last_error      TEXT
    ) STRICT;
    CREATE INDEX outbox_pending ON outbox (created_at) WHERE sent_at IS NULL;
    CREATE TABLE audit_log (
        seq        INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        run_id     TEXT,
        actor      TEXT NOT NULL,
        mode       TEXT NOT NULL,
        arn        TEXT NOT NULL,
        lease_id   TEXT,
        verdict    TEXT,
        decision   TEXT NOT NULL,
        detail     TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_by_arn ON audit_log (arn);
    CREATE TABLE audit_head (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        seq   INTEGER NOT NULL,
        hash  TEXT NOT NULL
    ) STRICT;",
    // 5: spend from Cost Explorer, per day, grouping (`project` or `task` tag) × tag value ×
    // region, in integer micro-dollars ('' = spend without the tag); `spend_days` records each
    // fetched day, its Estimated flag and whether it was final (no longer refetched).
    "CREATE TABLE spend (
        day        TEXT NOT NULL,
        dimension  TEXT NOT NULL,
        key        TEXT NOT NULL,
        region     TEXT NOT NULL,
        micro_usd  INTEGER NOT NULL,
        PRIMARY KEY (dimension, day, key, region)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE spend_days (
        dimension   TEXT NOT NULL,
        day         TEXT NOT NULL,
        estimated   INTEGER NOT NULL,
        final       INTEGER NOT NULL,
        fetched_at  INTEGER NOT NULL,
        PRIMARY KEY (dimension, day)
    ) STRICT, WITHOUT ROWID;",
    // 6: the mailer. Notices (`deletion-planned`, `reaped`) are rolled up into one message per
    // recipient; `rolled_into` names the message that carries a notice, and a notice's
    // `sent_at` is when it was rolled up (or closed, with `last_error`, when nobody could be
    // told). A message's `sent_at` is when the SMTP server accepted it, never earlier.
    "ALTER TABLE outbox ADD COLUMN rolled_into INTEGER REFERENCES outbox (id);",
    // 7: every pass looks for deletes noted as started (`reap_state = 'deleting'`); findings
    // keep every resolved row, so without an index that look scanned them all in the writer.
    "CREATE INDEX findings_deleting ON findings (id) WHERE reap_state = 'deleting';",
    // 8: every pass looks for `reap` findings not yet marked; without an index that look read
    // every finding ever opened (resolved ones are kept), 0.2 s per pass at 1M resources.
    "CREATE INDEX findings_to_mark ON findings (id)
         WHERE resolved_at IS NULL AND action = 'reap' AND deadline IS NULL;",
    // 9: the owner tag a finding was marked for ('' = none), so the last moment compares
    // against the owner at mark time, not the last walk's (NULL: marked before this column).
    "ALTER TABLE findings ADD COLUMN marked_owner TEXT;",
    // 10: locks that live in the store, so that two processes on one store never run the same
    // step at once (a pass or on-call reaping: `act`). A holder renews `expires_at` while it
    // works; `host` and `pid` let a process on the same host take over from one that died.
    "CREATE TABLE locks (
        name         TEXT PRIMARY KEY,
        holder       TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        what         TEXT NOT NULL,
        acquired_at  INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;",
    // 11: when the registry last served (wall-clock ms), written every few seconds by the
    // daemon, so that its own downtime can be credited to the leases it could not serve.
    "CREATE TABLE registry_alive (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        at  INTEGER NOT NULL
    ) STRICT;",
    // 12: the audit chain is keyed: HMAC-SHA256 under a key kept outside the store. Records
    // 1..=`unkeyed_until` were chained before with plain SHA-256 (0 for a store made since);
    // the first keyed append after them adds a keyed `chain-keyed` checkpoint record, and
    // `keyed_from` notes where the keyed chain starts (1 for a new store), `key_id` the key's
    // public id. Verification takes the key's start from the checkpoint record (under the
    // key), not from this row: this row is evidence that a chain was started, so an emptied log
    // is not an intact one.
    "CREATE TABLE audit_chain (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        unkeyed_until  INTEGER NOT NULL,
        keyed_from     INTEGER,
        key_id         TEXT
    ) STRICT;
    INSERT INTO audit_chain (id, unkeyed_until)
        VALUES (1, COALESCE((SELECT seq FROM audit_head WHERE id = 1), 0));",
    // 13: never-tagged discovery. A resource remembers which call found it (`tagging`,
    // `sweep`, `resource-explorer`): a complete walk marks gone only what its own source no
    // longer lists, so a pass without a sweep does not lose what the last sweep found. Its
    // creation time where that call gave one (ms). A walk keeps its sweep (JSON, NULL when none
    // ran) and, when every type of it completed, when it started (`swept_at`, ms): the next
    // sweep of that (account, region) is due an interval after it.
    "ALTER TABLE resources ADD COLUMN source TEXT NOT NULL DEFAULT 'tagging';
    ALTER TABLE resources ADD COLUMN created_at INTEGER;
    ALTER TABLE walks ADD COLUMN sweep TEXT;
    ALTER TABLE walks ADD COLUMN swept_at INTEGER;
    CREATE INDEX walks_swept ON walks (account, region, swept_at) WHERE swept_at IS NOT NULL;",
    // 14: who made a resource, from CloudTrail (`creator`, NULL when unknown), and when that
    // was asked (`creator_checked_at`, ms; NULL: not yet), so each is asked once.
    "ALTER TABLE resources ADD COLUMN creator TEXT;
    ALTER TABLE resources ADD COLUMN creator_checked_at INTEGER;",
    // 15: the restore guard: while `suspended_since` is set, reaping of `unknown-lease` and
    // `released` resources is held (a restored store has forgotten the leases made since its
    // backup); `clean_passes` counts complete passes in a row without evidence of that.
    "CREATE TABLE restore_guard (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        suspended_since INTEGER,
        reason          TEXT,
        clean_passes    INTEGER NOT NULL DEFAULT 0,
        confirmed_at    INTEGER,
        confirmed_by    TEXT
    ) STRICT;",
    // 16: an acquire's idempotency key: while a lease of the project with that key is active,
    // acquiring with it returns that lease (checked in the insert's transaction).
    "ALTER TABLE leases ADD COLUMN idem_key TEXT;
    CREATE INDEX leases_by_key ON leases (project, idem_key) WHERE idem_key IS NOT NULL;",
    // 17: when a complete pass confirmed every resource of an ended lease gone (teardown
    // proof); resources by lease for that check.
    "ALTER TABLE leases ADD COLUMN teardown_complete_at INTEGER;
    CREATE INDEX leases_teardown_open ON leases (ends_at) WHERE teardown_complete_at IS NULL;
    CREATE INDEX resources_by_lease ON resources (lease_id) WHERE lease_id IS NOT NULL;",
    // 18: the outbox's dead letters: messages the relay refused for good, kept (not sent, not
    // retried) until `ephemera mail retry`; `refusals` counts answers, not outages.
    "ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN dead_at INTEGER;",
    // 19: the controller a resource's tags name (`TYPE NAME`, see `ControllerRef`), so that a
    // controller is deleted only once every live member of it is due; indexed for the live
    // ones only, the few the plan reads.
    "ALTER TABLE resources ADD COLUMN controller TEXT;
    CREATE INDEX resources_controlled ON resources (controller)
        WHERE controller IS NOT NULL AND gone_at IS NULL;",
    // 20: the retention purge (`store::retention`). Each finds its candidates through an index
    // instead of scanning history: gone resources by when they went, resolved findings by
    // when they resolved, ended runs, done-with outbox rows by when they were. The rest make
    // the checks on delete cheap: a resource's findings (also the foreign key's look-up
    // when a resource row goes), a message's rolled-up notices (the same for the outbox). Leases are read whole (one row per task run, the smallest
    // history): an index on when a lease ended would be rewritten by every heartbeat, on the
    // lease API's hot path, for a look-up made once an hour.
    "CREATE INDEX resources_gone ON resources (gone_at) WHERE gone_at IS NOT NULL;
    CREATE INDEX findings_by_arn ON findings (arn);
    CREATE INDEX findings_resolved ON findings (resolved_at) WHERE resolved_at IS NOT NULL;
    CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX outbox_done ON outbox (sent_at) WHERE sent_at IS NOT NULL;
    CREATE INDEX outbox_rolled_into ON outbox (rolled_into) WHERE rolled_into IS NOT NULL;",
    // 21: a pass that skips a finding for the reason it was last skipped for appends no audit
    // record: `skip_seq` is the record of the first skip of the run of skips, `skip_count`
    // how many passes skipped it for that reason, `last_skipped_at` (ms) the latest. Any
    // other decision about the finding ends the run (a later skip is recorded again).
    "ALTER TABLE findings ADD COLUMN skip_seq INTEGER;
    ALTER TABLE findings ADD COLUMN skip_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE findings ADD COLUMN last_skipped_at INTEGER;",
    // 22: no index of resources by lease. Lease ids are random, so each page of a pass dirtied
    // about a hundred 16 KiB index pages and the WAL wrote them all: the pipeline bench's
    // persist ran at 17k resources/s with it, 43k without. The two statements that asked
    // "does a live resource name this lease" (teardown, lease purge) read one list of the
    // lease ids of live resources instead, a scan per statement.
    "DROP INDEX IF EXISTS resources_by_lease;",
    // 23: a message is claimed before it is sent, under the leader's fencing token and until
    // a wall-clock time: a replica that lost leadership cannot claim, and the new leader does
    // not send what the old one is still sending (see `Store::claim_message`).
    "ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
     ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;",
    // 24: a lease's story (`Store::lease_timeline`). The lease row keeps only its latest
    // state, so renewals, late heartbeats and the release are appended here (in the change's
    // own transaction), `detail` the change as JSON; they go with their lease (the purge's
    // delete cascades). Findings by lease for the timeline: a finding's lease is written when
    // it opens or changes, not every pass, so this index costs the pass little. Resources get
    // no such index on purpose (see 22): the timeline reads them in one scan.
    "CREATE TABLE lease_events (
        id         INTEGER PRIMARY KEY,
        lease_id   TEXT NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        principal  TEXT NOT NULL,
        detail     TEXT NOT NULL
    ) STRICT;
    CREATE INDEX lease_events_by_lease ON lease_events (lease_id, at);
    CREATE INDEX findings_by_lease ON findings (lease_id) WHERE lease_id IS NOT NULL;",
    // 25: an access key is deleted in two steps, deactivated first: when ephemera deactivated
    // it (the deletion waits `enforcement.deactivation_grace` from then). Apart from
    // `reap_state`, which every delete call overwrites.
    "ALTER TABLE findings ADD COLUMN deactivated_at INTEGER;",
    // 26: PostgreSQL drops the foreign keys of findings (to resources) and of finding events
    // (to findings); SQLite keeps them. SQLite checks one as an index probe inside the
    // statement; PostgreSQL runs a query per row for it (about 10 µs: half the cost of a
    // finding's insert, two thirds of an event's), and a first pass inserts hundreds of
    // thousands of each. The store writes a finding after its resource and an event after its
    // finding, in one transaction, and purges them children first; the retention test checks
    // that no row is left without its parent, on both engines.
    "-- nothing to change on SQLite",
    // 27: PostgreSQL drops the foreign key of lease events (to leases), for the reason of 26:
    // every acquire and every release inserts an event, and its check was a query per row on
    // the lease API's path. The store writes an event in the statement that writes its lease,
    // and the purge deletes a lease's events with it (PostgreSQL has no cascade left to do
    // it); the lease timeline test checks, on both engines, that a purged lease leaves no
    // event behind and another lease keeps its own.
    "-- nothing to change on SQLite",
    // 28: which resources may have a finding for a complete walk to resolve. A walk's end
    // resolved the open findings of every resource of its scope that was gone, terminated,
    // leased or protected: a probe of the findings for each, two thirds of a million on a
    // first pass of a million resources, to resolve none (about a second on one core, on
    // the pass's tail). Now a page marks the rows it turns from flagged to fine, gone-marking
    // marks what it marks, and the walk's end resolves only the marked rows of its scope and
    // clears them. Rows already in such a state with a finding open are marked here.
    "ALTER TABLE resources ADD COLUMN resolve_pending INTEGER NOT NULL DEFAULT 0;
    UPDATE resources SET resolve_pending = 1
    WHERE (gone_at IS NOT NULL OR state = 'terminated' OR verdict IN ('leased', 'protected'))
      AND EXISTS (SELECT 1 FROM findings f WHERE f.arn = resources.arn AND f.resolved_at IS NULL);
    CREATE INDEX resources_resolve_pending ON resources (account, region) WHERE resolve_pending = 1;",
    // 29: which runs were started by a build that marks resources for resolving (28). During
    // a rolling upgrade a replica of an earlier build may still run a pass after 28: its
    // pages mark nothing, so a resource it found fine in a walk that failed would keep its
    // finding open for good. Such a run leaves this NULL, and the next walk's end of this
    // build marks again, as 28 did, every row that may have a finding to resolve.
    "ALTER TABLE runs ADD COLUMN marks_resolvable INTEGER;
    UPDATE runs SET marks_resolvable = 1;
    CREATE INDEX runs_unaware_of_marks ON runs (id) WHERE marks_resolvable IS NULL;",
];

/// How many migrations this build knows (the PostgreSQL schema must reach the same number).
pub(super) const COUNT: usize = MIGRATIONS.len();

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    apply_first(conn, MIGRATIONS.len())
}

/// Applies the first `n` migrations (all of them in production; fewer to build an old store
/// in a test).
pub(super) fn apply_first(conn: &mut Connection, n: usize) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(n).skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
