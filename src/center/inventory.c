/* The controller's inventory: clusters, hosts, VMs and tasks in one SQLite
 * database file (WAL mode, so a crash never leaves it half written).
 * Every SQL statement of the controller is here, one named function per
 * statement (inventory.h), grouped by table; the handlers contain no SQL.
 * The functions go through three small private helpers that bind a JSON
 * array of parameters (every value is a bound parameter, never text
 * formatted into the SQL) and return rows as JSON objects, which is the form
 * every API answer needs anyway. The schema version lives in the `meta`
 * table. Callers hold c->lock. */
#include "center/center.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *schema =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS clusters("
	"  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	"  evc_level TEXT NOT NULL DEFAULT 'none',"
	"  max_migrations_per_host INTEGER,"
	"  created_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS hosts("
	"  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, address TEXT UNIQUE NOT NULL,"
	"  token TEXT NOT NULL, cluster_id INTEGER NOT NULL REFERENCES clusters(id),"
	"  state TEXT NOT NULL DEFAULT 'connected', facts TEXT, last_seen INTEGER, added_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS vms("
	"  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, cluster_id INTEGER NOT NULL REFERENCES clusters(id),"
	"  host_id INTEGER REFERENCES hosts(id), config TEXT NOT NULL, boot TEXT NOT NULL,"
	"  devices TEXT NOT NULL DEFAULT '[\"serial\"]', evc_level TEXT,"
	"  power_state TEXT NOT NULL DEFAULT 'off', api TEXT, locked_by INTEGER,"
	"  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
	"  nics TEXT NOT NULL DEFAULT '[]', disks TEXT NOT NULL DEFAULT '[]');"
	"CREATE TABLE IF NOT EXISTS tasks("
	"  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, vm_id INTEGER, vm_name TEXT,"
	"  state TEXT NOT NULL, stage TEXT, progress REAL NOT NULL DEFAULT 0, message TEXT,"
	"  source_host TEXT, dest_host TEXT, detail TEXT, result TEXT,"
	"  created_at INTEGER NOT NULL, started_at INTEGER, ended_at INTEGER);"
	"CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);"
	/* added without a schema version: an older glide ignores the table */
	"CREATE TABLE IF NOT EXISTS netchecks("
	"  source_id INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,"
	"  destination_id INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,"
	"  service TEXT NOT NULL, ok INTEGER NOT NULL, reachable INTEGER NOT NULL, result TEXT NOT NULL,"
	"  checked_at INTEGER NOT NULL, PRIMARY KEY(source_id, destination_id, service));"
	/* DRS (docs/drs.md), also without a schema version */
	"CREATE TABLE IF NOT EXISTS cluster_drs("
	"  cluster_id INTEGER PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,"
	"  mode TEXT NOT NULL, threshold INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS drs_moves("
	"  vm_id INTEGER PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE, moved_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS drs_recommendations("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT, cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,"
	"  vm TEXT NOT NULL, source TEXT NOT NULL, destination TEXT, reason TEXT NOT NULL,"
	"  gain REAL NOT NULL, cost REAL NOT NULL, cluster_before REAL NOT NULL, cluster_after REAL NOT NULL,"
	"  state TEXT NOT NULL, task INTEGER, created_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS rules("
	"  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	"  cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL, vms TEXT NOT NULL, hosts TEXT NOT NULL, created_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS host_maintenance("
	"  host_id INTEGER PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,"
	"  state TEXT NOT NULL, evacuate_powered_off INTEGER NOT NULL, timeout_s INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL, reason TEXT);"
	/* assignable hardware a VM asks for (docs/drs.md), also without a schema version */
	"CREATE TABLE IF NOT EXISTS vm_hardware("
	"  vm_id INTEGER PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE, requests TEXT NOT NULL);"
	/* a VM's own DRS automation level (docs/drs.md), also without a schema version */
	"CREATE TABLE IF NOT EXISTS vm_drs("
	"  vm_id INTEGER PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE, automation TEXT NOT NULL);"
	/* named VM and host groups that rules refer to (docs/drs.md), also without a schema version */
	"CREATE TABLE IF NOT EXISTS drs_groups("
	"  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	"  cluster_id INTEGER NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL, members TEXT NOT NULL, created_at INTEGER NOT NULL);";

/* A VM row: every column of vms, "hardware" (its requests, a JSON array as
 * text) and "drs_automation" (its own DRS automation level, NULL: the cluster's). */
#define VM_ROWS "SELECT v.*, COALESCE(hw.requests, '[]') AS hardware, vd.automation AS drs_automation FROM vms v" \
		" LEFT JOIN vm_hardware hw ON hw.vm_id = v.id LEFT JOIN vm_drs vd ON vd.vm_id = v.id"

/* Schema 1 -> 2: VMs get their NICs and disks (attach.h). */
static const char *schema_1_to_2 =
	"BEGIN;"
	"ALTER TABLE vms ADD COLUMN nics TEXT NOT NULL DEFAULT '[]';"
	"ALTER TABLE vms ADD COLUMN disks TEXT NOT NULL DEFAULT '[]';"
	"UPDATE meta SET value = '2' WHERE key = 'schema_version';"
	"COMMIT;";

int64_t inv_now_ms(void)
{
	return (int64_t)(realtime_ns() / 1000000);
}

const char *inv_error(struct center *c)
{
	return sqlite3_errmsg(c->db);
}

static int bind_params(sqlite3_stmt *st, json_t *params)
{
	size_t i;
	json_t *p;
	json_array_foreach(params, i, p) {
		int idx = (int)i + 1, rc;
		if (json_is_string(p))
			rc = sqlite3_bind_text(st, idx, json_string_value(p), -1, SQLITE_TRANSIENT);
		else if (json_is_integer(p))
			rc = sqlite3_bind_int64(st, idx, json_integer_value(p));
		else if (json_is_real(p))
			rc = sqlite3_bind_double(st, idx, json_real_value(p));
		else if (json_is_null(p))
			rc = sqlite3_bind_null(st, idx);
		else {
			char *s = json_dumps(p, JSON_COMPACT);
			rc = sqlite3_bind_text(st, idx, s ? s : "null", -1, SQLITE_TRANSIENT);
			free(s);
		}
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/* Runs sql with params (a JSON array of strings/integers/reals/null, taken
 * over); returns its rows as objects (an empty array on error). */
static json_t *inv_rows(struct center *c, const char *sql, json_t *params)
{
	sqlite3_stmt *st;
	json_t *rows = json_array();
	int rc;

	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
		glide_log("center", "SQL error: %s in %s", sqlite3_errmsg(c->db), sql);
		json_decref(params);
		return rows;
	}
	if (params)
		bind_params(st, params);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = json_object();
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const char *name = sqlite3_column_name(st, i);
			switch (sqlite3_column_type(st, i)) {
			case SQLITE_INTEGER: json_object_set_new(row, name, json_integer(sqlite3_column_int64(st, i))); break;
			case SQLITE_FLOAT: json_object_set_new(row, name, json_real(sqlite3_column_double(st, i))); break;
			case SQLITE_NULL: json_object_set_new(row, name, json_null()); break;
			default: json_object_set_new(row, name, json_string((const char *)sqlite3_column_text(st, i))); break;
			}
		}
		json_array_append_new(rows, row);
	}
	if (rc != SQLITE_DONE)
		glide_log("center", "SQL error: %s", sqlite3_errmsg(c->db));
	sqlite3_finalize(st);
	json_decref(params);
	return rows;
}

/* The first row or NULL. */
static json_t *inv_row(struct center *c, const char *sql, json_t *params)
{
	json_t *rows = inv_rows(c, sql, params);
	json_t *r = json_array_size(rows) ? json_incref(json_array_get(rows, 0)) : NULL;
	json_decref(rows);
	return r;
}

/* A statement without rows: 0 or -1 (logged); *last_id: the new rowid. */
static int inv_run(struct center *c, const char *sql, json_t *params, int64_t *last_id)
{
	sqlite3_stmt *st;
	int rc = -1;
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (params)
			bind_params(st, params);
		rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
		sqlite3_finalize(st);
	}
	if (rc)
		glide_log("center", "SQL error: %s in %s", sqlite3_errmsg(c->db), sql);
	if (!rc && last_id)
		*last_id = sqlite3_last_insert_rowid(c->db);
	json_decref(params);
	return rc;
}

int inv_open(struct center *c, const char *path, char *err, size_t errlen)
{
	char *msg = NULL;
	mode_t old = umask(077); /* the database holds host tokens */
	int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		errf(err, errlen, "cannot open inventory database %s: %s", path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
		return -EIO;
	}
	sqlite3_busy_timeout(c->db, 5000);
	if (sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(c->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		errf(err, errlen, "cannot set up inventory database %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	json_t *v = inv_row(c, "SELECT value FROM meta WHERE key='schema_version'", NULL);
	if (!v) {
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", CENTER_SCHEMA_VERSION);
		inv_run(c, "INSERT INTO meta(key, value) VALUES('schema_version', ?)", json_pack("[s]", ver), NULL);
	} else if (atoi(json_string_value(json_object_get(v, "value"))) == 1) {
		if (sqlite3_exec(c->db, schema_1_to_2, NULL, NULL, &msg) != SQLITE_OK) {
			errf(err, errlen, "cannot upgrade inventory %s from schema version 1 to 2: %s", path, msg ? msg : "?");
			sqlite3_free(msg);
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
			json_decref(v);
			return -EIO;
		}
		glide_log("center", "inventory %s upgraded from schema version 1 to 2 (VM NICs and disks)", path);
	} else if (atoi(json_string_value(json_object_get(v, "value"))) != CENTER_SCHEMA_VERSION) {
		errf(err, errlen, "inventory %s has schema version %s; this glide understands %d", path,
		     json_string_value(json_object_get(v, "value")), CENTER_SCHEMA_VERSION);
		json_decref(v);
		return -EPROTO;
	}
	json_decref(v);
	chmod(path, 0600);
	return 0;
}

/* ---- clusters: name, EVC baseline, migration limit ---- */

json_t *inv_cluster(struct center *c, const char *name)
{
	return inv_row(c, "SELECT * FROM clusters WHERE name = ?", json_pack("[s]", name));
}

json_t *inv_cluster_by_id(struct center *c, int64_t id)
{
	return inv_row(c, "SELECT * FROM clusters WHERE id = ?", json_pack("[I]", (json_int_t)id));
}

int64_t inv_default_cluster(struct center *c)
{
	json_t *cl = inv_cluster(c, DEFAULT_CLUSTER);
	int64_t id = 0; /* 0 (no cluster) when the insert fails */
	if (!cl) {
		inv_run(c, "INSERT INTO clusters(name, evc_level, created_at) VALUES(?, 'none', ?)",
			json_pack("[s, I]", DEFAULT_CLUSTER, (json_int_t)inv_now_ms()), &id);
		return id;
	}
	id = json_integer_value(json_object_get(cl, "id"));
	json_decref(cl);
	return id;
}

json_t *inv_clusters_with_counts(struct center *c)
{
	return inv_rows(c, "SELECT c.*, (SELECT COUNT(*) FROM hosts h WHERE h.cluster_id = c.id) AS hosts,"
			   " (SELECT COUNT(*) FROM vms v WHERE v.cluster_id = c.id) AS vms FROM clusters c ORDER BY c.id", NULL);
}

int inv_cluster_insert(struct center *c, const char *name, const char *evc_level, const int64_t *max_migrations_per_host)
{
	json_t *params = max_migrations_per_host
				 ? json_pack("[s, s, I, I]", name, evc_level, (json_int_t)*max_migrations_per_host, (json_int_t)inv_now_ms())
				 : json_pack("[s, s, n, I]", name, evc_level, (json_int_t)inv_now_ms());
	return inv_run(c, "INSERT INTO clusters(name, evc_level, max_migrations_per_host, created_at) VALUES(?, ?, ?, ?)", params, NULL);
}

int inv_cluster_set_evc(struct center *c, int64_t cluster_id, const char *evc_level)
{
	return inv_run(c, "UPDATE clusters SET evc_level = ? WHERE id = ?", json_pack("[s, I]", evc_level, (json_int_t)cluster_id), NULL);
}

json_t *inv_cluster_facts(struct center *c, int64_t cluster_id)
{
	json_t *rows = inv_rows(c, "SELECT facts FROM hosts WHERE cluster_id = ? AND facts IS NOT NULL",
				json_pack("[I]", (json_int_t)cluster_id));
	json_t *facts = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
		json_array_append_new(facts, json_loads(json_string_value(json_object_get(r, "facts")), 0, NULL));
	json_decref(rows);
	return facts;
}

/* ---- hosts: address, token, cluster, state, last facts ---- */

static const char *host_named_sql = "SELECT * FROM hosts WHERE name = ?1 OR address = ?1";

json_t *inv_host(struct center *c, const char *name_or_address)
{
	return inv_row(c, host_named_sql, json_pack("[s]", name_or_address));
}

json_t *inv_hosts_named(struct center *c, const char *name_or_address)
{
	return inv_rows(c, host_named_sql, json_pack("[s]", name_or_address));
}

json_t *inv_host_by_id(struct center *c, int64_t id)
{
	return inv_row(c, "SELECT * FROM hosts WHERE id = ?", json_pack("[I]", (json_int_t)id));
}

json_t *inv_hosts(struct center *c)
{
	return inv_rows(c, "SELECT * FROM hosts", NULL);
}

json_t *inv_hosts_in_cluster(struct center *c, int64_t cluster_id)
{
	return inv_rows(c, "SELECT * FROM hosts WHERE cluster_id = ? ORDER BY id", json_pack("[I]", (json_int_t)cluster_id));
}

json_t *inv_hosts_with_cluster(struct center *c)
{
	return inv_rows(c, "SELECT h.*, c.name AS cluster FROM hosts h JOIN clusters c ON c.id = h.cluster_id ORDER BY h.id", NULL);
}

int inv_host_insert(struct center *c, const char *name, const char *address, const char *token, int64_t cluster_id, json_t *facts)
{
	char *text = json_dumps(facts, JSON_COMPACT);
	int rc = inv_run(c, "INSERT INTO hosts(name, address, token, cluster_id, state, facts, last_seen, added_at) VALUES(?, ?, ?, ?, 'connected', ?, ?, ?)",
			 json_pack("[s, s, s, I, s, I, I]", name, address, token, (json_int_t)cluster_id, text, (json_int_t)inv_now_ms(),
				   (json_int_t)inv_now_ms()), NULL);
	free(text);
	return rc;
}

char *inv_host_busy_vms(struct center *c, int64_t host_id)
{
	json_t *busy = inv_row(c, "SELECT group_concat(name, ', ') AS names FROM vms WHERE host_id = ? AND power_state != 'off'",
			       json_pack("[I]", (json_int_t)host_id));
	const char *names = json_string_value(json_object_get(busy, "names"));
	char *r = names ? strdup(names) : NULL;
	json_decref(busy);
	return r;
}

int inv_host_delete(struct center *c, int64_t host_id)
{
	int detached = inv_run(c, "UPDATE vms SET host_id = NULL WHERE host_id = ?", json_pack("[I]", (json_int_t)host_id), NULL);
	int deleted = inv_run(c, "DELETE FROM hosts WHERE id = ?", json_pack("[I]", (json_int_t)host_id), NULL);
	return detached || deleted ? -1 : 0;
}

int inv_host_set_disconnected(struct center *c, int64_t host_id)
{
	return inv_run(c, "UPDATE hosts SET state = 'disconnected' WHERE id = ?", json_pack("[I]", (json_int_t)host_id), NULL);
}

int inv_host_set_connected(struct center *c, int64_t host_id, json_t *facts)
{
	char *text = json_dumps(facts, JSON_COMPACT);
	int rc = inv_run(c, "UPDATE hosts SET state = 'connected', facts = ?, last_seen = ? WHERE id = ?",
			 json_pack("[s, I, I]", text, (json_int_t)inv_now_ms(), (json_int_t)host_id), NULL);
	free(text);
	return rc;
}

/* ---- VMs: where each VM is registered and runs, its configuration and task lock ---- */

json_t *inv_vm(struct center *c, const char *name)
{
	return inv_row(c, VM_ROWS " WHERE v.name = ?", json_pack("[s]", name));
}

static json_t *parsed(json_t *row, const char *key)
{
	const char *s = json_string_value(json_object_get(row, key));
	json_t *j = s ? json_loads(s, 0, NULL) : NULL;
	return j ? j : json_null();
}

json_t *inv_vm_array(json_t *vm, const char *column)
{
	json_t *l = parsed(vm, column);
	if (json_is_array(l))
		return l;
	json_decref(l);
	return json_array();
}

json_t *inv_vm_json(struct center *c, json_t *vm)
{
	json_t *host = json_is_integer(json_object_get(vm, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id")))
			       : NULL;
	json_t *cl = inv_cluster_by_id(c, json_integer_value(json_object_get(vm, "cluster_id")));
	json_t *config = parsed(vm, "config");
	json_t *j = json_pack("{s:O, s:O, s:s?, s:s?, s:O, s:O, s:O, s:O, s:o, s:o, s:o, s:O, s:O}",
			      "name", json_object_get(vm, "name"), "state", json_object_get(vm, "power_state"),
			      "host", host ? json_string_value(json_object_get(host, "name")) : NULL,
			      "cluster", cl ? json_string_value(json_object_get(cl, "name")) : NULL,
			      "api", json_object_get(vm, "api"),
			      "memory", json_object_get(config, "memory"), "vcpus", json_object_get(config, "vcpus"),
			      "evc_level", json_object_get(vm, "evc_level"), "config", config,
			      "boot", parsed(vm, "boot"), "devices", parsed(vm, "devices"),
			      "locked_by_task", json_object_get(vm, "locked_by"), "updated_at", json_object_get(vm, "updated_at"));
	json_object_set_new(j, "nics", inv_vm_array(vm, "nics"));
	json_object_set_new(j, "disks", inv_vm_array(vm, "disks"));
	json_object_set_new(j, "hardware", inv_vm_array(vm, "hardware"));
	json_object_set_new(j, "drs_automation", json_string(json_string_value(json_object_get(vm, "drs_automation")) ?: "default"));
	if (host)
		json_object_set(j, "host_address", json_object_get(host, "address"));
	if (cl && !json_is_string(json_object_get(vm, "evc_level")))
		json_object_set(j, "cluster_evc_level", json_object_get(cl, "evc_level"));
	json_decref(host);
	json_decref(cl);
	return j;
}

json_t *inv_vms(struct center *c)
{
	return inv_rows(c, VM_ROWS " ORDER BY v.id", NULL);
}

json_t *inv_vms_in_cluster(struct center *c, int64_t cluster_id)
{
	return inv_rows(c, VM_ROWS " WHERE v.cluster_id = ? ORDER BY v.id", json_pack("[I]", (json_int_t)cluster_id));
}

json_t *inv_vms_on_cluster_level(struct center *c, int64_t cluster_id)
{
	return inv_rows(c, "SELECT name, config FROM vms WHERE cluster_id = ? AND evc_level IS NULL AND power_state != 'off'",
			json_pack("[I]", (json_int_t)cluster_id));
}

int inv_vm_insert(struct center *c, const char *name, int64_t cluster_id, json_t *config, json_t *boot, json_t *devices,
		  const char *evc_level, json_t *nics, json_t *disks, json_t *hardware)
{
	json_t *dev = json_is_array(devices) ? json_incref(devices) : json_pack("[s]", "serial");
	json_t *n = json_is_array(nics) ? json_incref(nics) : json_array();
	json_t *d = json_is_array(disks) ? json_incref(disks) : json_array();
	int rc = inv_run(c, "INSERT INTO vms(name, cluster_id, config, boot, devices, evc_level, power_state, created_at, updated_at,"
			    " nics, disks) VALUES(?, ?, ?, ?, ?, ?, 'off', ?, ?, ?, ?)",
			 json_pack("[s, I, O, O, O, s?, I, I, O, O]", name, (json_int_t)cluster_id, config, boot, dev, evc_level,
				   (json_int_t)inv_now_ms(), (json_int_t)inv_now_ms(), n, d), NULL);
	if (!rc && json_array_size(hardware) &&
	    (rc = inv_run(c, "INSERT INTO vm_hardware(vm_id, requests) SELECT id, ? FROM vms WHERE name = ?",
			  json_pack("[O, s]", hardware, name), NULL)))
		inv_run(c, "DELETE FROM vms WHERE name = ?", json_pack("[s]", name), NULL); /* not half a VM */
	json_decref(dev);
	json_decref(n);
	json_decref(d);
	return rc;
}

json_t *inv_vm_with_mac(struct center *c, const char *mac)
{
	return inv_row(c, "SELECT v.name AS name, CAST(n.key AS INTEGER) AS nic FROM vms v, json_each(v.nics) n"
			  " WHERE lower(json_extract(n.value, '$.mac')) = lower(?) ORDER BY v.id LIMIT 1", json_pack("[s]", mac));
}

int inv_vm_set_config(struct center *c, int64_t vm_id, json_t *config, bool set_evc, const char *evc_level)
{
	return inv_run(c, "UPDATE vms SET config = ?, evc_level = CASE WHEN ? THEN ? ELSE evc_level END, updated_at = ? WHERE id = ?",
		       json_pack("[O, i, s?, I, I]", config, set_evc, evc_level, (json_int_t)inv_now_ms(), (json_int_t)vm_id), NULL);
}

int inv_vm_delete(struct center *c, int64_t vm_id)
{
	return inv_run(c, "DELETE FROM vms WHERE id = ?", json_pack("[I]", (json_int_t)vm_id), NULL);
}

json_t *inv_vms_unlocked_before(struct center *c, int64_t before_ms)
{
	return inv_rows(c, "SELECT id, name, host_id, power_state, api FROM vms WHERE locked_by IS NULL AND updated_at < ?",
			json_pack("[I]", (json_int_t)before_ms));
}

int inv_vm_set_location(struct center *c, int64_t vm_id, int64_t host_id, const char *api, const char *power_state)
{
	return inv_run(c, "UPDATE vms SET host_id = ?, api = ?, power_state = ?, updated_at = ? WHERE id = ?",
		       json_pack("[I, s?, s, I, I]", (json_int_t)host_id, api, power_state, (json_int_t)inv_now_ms(),
				 (json_int_t)vm_id), NULL);
}

int inv_vm_set_unknown(struct center *c, int64_t vm_id)
{
	return inv_run(c, "UPDATE vms SET power_state = 'unknown', updated_at = ? WHERE id = ?",
		       json_pack("[I, I]", (json_int_t)inv_now_ms(), (json_int_t)vm_id), NULL);
}

int inv_vm_set_off(struct center *c, int64_t vm_id, int64_t host_id)
{
	int64_t now = inv_now_ms();
	json_t *params = host_id ? json_pack("[I, I, I]", (json_int_t)host_id, (json_int_t)now, (json_int_t)vm_id)
				 : json_pack("[n, I, I]", (json_int_t)now, (json_int_t)vm_id);
	return inv_run(c, "UPDATE vms SET power_state = 'off', api = NULL, host_id = COALESCE(?, host_id), updated_at = ? WHERE id = ?",
		       params, NULL);
}

int inv_vm_set_disks(struct center *c, int64_t vm_id, json_t *disks)
{
	char *text = json_dumps(disks, JSON_COMPACT);
	int rc = text ? inv_run(c, "UPDATE vms SET disks = ?, updated_at = ? WHERE id = ?",
				json_pack("[s, I, I]", text, (json_int_t)inv_now_ms(), (json_int_t)vm_id), NULL)
		      : -ENOMEM;
	free(text);
	return rc;
}

int inv_vm_set_host(struct center *c, int64_t vm_id, int64_t host_id)
{
	return inv_run(c, "UPDATE vms SET host_id = ?, api = NULL WHERE id = ?", json_pack("[I, I]", (json_int_t)host_id, (json_int_t)vm_id),
		       NULL);
}

int inv_vm_set_powered_on(struct center *c, int64_t vm_id, int64_t host_id, const char *api, json_t *config)
{
	char *cfg_text = json_dumps(config, JSON_COMPACT);
	int rc = inv_run(c, "UPDATE vms SET host_id = ?, power_state = 'running', api = ?, config = ?, updated_at = ? WHERE id = ?",
			 json_pack("[I, s?, s, I, I]", (json_int_t)host_id, api, cfg_text, (json_int_t)inv_now_ms(), (json_int_t)vm_id),
			 NULL);
	free(cfg_text);
	return rc;
}

int inv_vm_lock(struct center *c, int64_t vm_id, int64_t task)
{
	return inv_run(c, "UPDATE vms SET locked_by = ? WHERE id = ?", json_pack("[I, I]", (json_int_t)task, (json_int_t)vm_id), NULL);
}

int inv_vm_unlock(struct center *c, int64_t vm_id)
{
	return inv_run(c, "UPDATE vms SET locked_by = NULL, updated_at = ? WHERE id = ?",
		       json_pack("[I, I]", (json_int_t)inv_now_ms(), (json_int_t)vm_id), NULL);
}

int inv_vm_unlock_task(struct center *c, int64_t vm_id, int64_t task)
{
	return inv_run(c, "UPDATE vms SET locked_by = NULL, updated_at = ? WHERE id = ? AND locked_by = ?",
		       json_pack("[I, I, I]", (json_int_t)inv_now_ms(), (json_int_t)vm_id, (json_int_t)task), NULL);
}

/* ---- tasks: one row per long-running operation (tasks.c keeps the view) ---- */

int64_t inv_task_insert(struct center *c, const char *kind, int64_t vm_id, const char *vm_name, const char *state,
			const char *src, const char *dst)
{
	int64_t id = 0, now = inv_now_ms();
	inv_run(c,
		"INSERT INTO tasks(kind, vm_id, vm_name, state, stage, source_host, dest_host, created_at, started_at)"
		" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
		json_pack("[s, I, s, s, s, s?, s?, I, I]", kind, (json_int_t)vm_id, vm_name, state, state, src, dst,
			  (json_int_t)now, (json_int_t)now),
		&id);
	return id;
}

int inv_task_update(struct center *c, int64_t id, const char *stage, double progress, json_t *detail)
{
	return inv_run(c, "UPDATE tasks SET state = 'running', stage = ?, progress = ?, detail = ? WHERE id = ? AND state IN ('queued', 'running')",
		       json_pack("[s, f, O?, I]", stage, progress, detail, (json_int_t)id), NULL);
}

int inv_task_finish(struct center *c, int64_t id, bool ok, const char *message, json_t *result)
{
	return inv_run(c,
		       "UPDATE tasks SET state = ?, stage = ?, progress = CASE WHEN ? THEN 1.0 ELSE progress END, message = ?,"
		       " result = ?, ended_at = ? WHERE id = ?",
		       json_pack("[s, s, i, s?, O?, I, I]", ok ? "succeeded" : "failed", ok ? "done" : "failed", ok, message, result,
				 (json_int_t)inv_now_ms(), (json_int_t)id),
		       NULL);
}

int inv_task_started(struct center *c, int64_t id)
{
	return inv_run(c, "UPDATE tasks SET started_at = ? WHERE id = ?", json_pack("[I, I]", (json_int_t)inv_now_ms(), (json_int_t)id),
		       NULL);
}

json_t *inv_task(struct center *c, int64_t id)
{
	return inv_row(c, "SELECT * FROM tasks WHERE id = ?", json_pack("[I]", (json_int_t)id));
}

json_t *inv_tasks_recent(struct center *c, int limit)
{
	return inv_rows(c, "SELECT * FROM tasks ORDER BY id DESC LIMIT ?", json_pack("[i]", limit));
}

/* ---- the whole inventory ---- */

json_t *inv_counts(struct center *c)
{
	return inv_row(c, "SELECT (SELECT COUNT(*) FROM clusters) AS clusters, (SELECT COUNT(*) FROM hosts) AS hosts,"
			  " (SELECT COUNT(*) FROM vms) AS vms, (SELECT COUNT(*) FROM tasks WHERE state IN ('queued','running')) AS tasks_running", NULL);
}

void inv_recover(struct center *c)
{
	json_t *rows = inv_rows(c, "SELECT id, kind, vm_name FROM tasks WHERE state IN ('queued', 'running')", NULL);
	size_t i;
	json_t *t;
	json_array_foreach(rows, i, t)
		glide_log("center", "task %lld (%s of %s) was interrupted by a controller restart",
			  (long long)json_integer_value(json_object_get(t, "id")), json_string_value(json_object_get(t, "kind")),
			  json_string_value(json_object_get(t, "vm_name")));
	json_decref(rows);
	inv_run(c,
		"UPDATE tasks SET state = 'failed', ended_at = ?, message = 'interrupted: the controller restarted while "
		"this task ran; the VM state was read back from its hosts' WHERE state IN ('queued', 'running')",
		json_pack("[I]", (json_int_t)inv_now_ms()), NULL);
	inv_run(c, "UPDATE vms SET locked_by = NULL WHERE locked_by IS NOT NULL", NULL, NULL);
}

/* ---- DRS: per-cluster settings, the last move of each VM, recommendations ---- */

json_t *inv_cluster_drs(struct center *c, int64_t cluster_id)
{
	json_t *r = inv_row(c, "SELECT mode, threshold FROM cluster_drs WHERE cluster_id = ?",
			    json_pack("[I]", (json_int_t)cluster_id));
	return r ? r : json_pack("{s:s, s:i}", "mode", "manual", "threshold", 3);
}

int inv_vm_set_drs_automation(struct center *c, int64_t vm_id, const char *automation)
{
	if (!automation)
		return inv_run(c, "DELETE FROM vm_drs WHERE vm_id = ?", json_pack("[I]", (json_int_t)vm_id), NULL);
	return inv_run(c, "INSERT INTO vm_drs(vm_id, automation) VALUES(?, ?) ON CONFLICT(vm_id) DO UPDATE SET automation = excluded.automation",
		       json_pack("[I, s]", (json_int_t)vm_id, automation), NULL);
}

int inv_cluster_set_limit(struct center *c, int64_t cluster_id, const int64_t *max_migrations_per_host)
{
	return inv_run(c, "UPDATE clusters SET max_migrations_per_host = ? WHERE id = ?",
		       max_migrations_per_host ? json_pack("[I, I]", (json_int_t)*max_migrations_per_host, (json_int_t)cluster_id)
					       : json_pack("[n, I]", (json_int_t)cluster_id), NULL);
}

int inv_cluster_set_drs(struct center *c, int64_t cluster_id, const char *mode, int threshold)
{
	return inv_run(c, "INSERT OR REPLACE INTO cluster_drs(cluster_id, mode, threshold) VALUES(?, ?, ?)",
		       json_pack("[I, s, i]", (json_int_t)cluster_id, mode, threshold), NULL);
}

int64_t inv_drs_moved_at(struct center *c, int64_t vm_id)
{
	json_t *r = inv_row(c, "SELECT moved_at FROM drs_moves WHERE vm_id = ?", json_pack("[I]", (json_int_t)vm_id));
	int64_t t = r ? json_integer_value(json_object_get(r, "moved_at")) : 0;
	json_decref(r);
	return t;
}

int inv_drs_set_moved(struct center *c, int64_t vm_id, int64_t at_ms)
{
	return inv_run(c, "INSERT OR REPLACE INTO drs_moves(vm_id, moved_at) VALUES(?, ?)",
		       json_pack("[I, I]", (json_int_t)vm_id, (json_int_t)at_ms), NULL);
}

int inv_drs_recs_replace(struct center *c, int64_t cluster_id, json_t *recs)
{
	size_t i;
	json_t *r;
	int rc = 0;
	/* a recommendation the last pass made too (same VM, from, to) keeps its
	 * id, so that `drs apply ID` means what the user saw; the others are
	 * superseded (ids are never reused: AUTOINCREMENT) */
	json_t *keep = json_array();
	json_array_foreach(recs, i, r) {
		json_t *to = json_object_get(r, "to") ? json_object_get(r, "to") : json_null();
		json_t *old = inv_row(c, "SELECT id FROM drs_recommendations WHERE cluster_id = ? AND state = 'pending' AND vm = ?"
					 " AND source = ? AND destination IS ?",
				      json_pack("[I, s, s, O]", (json_int_t)cluster_id, json_string_value(json_object_get(r, "vm")),
						json_string_value(json_object_get(r, "from")), to));
		int64_t id = old ? json_integer_value(json_object_get(old, "id")) : 0;
		json_decref(old);
		json_t *vals = json_pack("[s, f, f, f, f]", json_string_value(json_object_get(r, "reason")),
					 json_number_value(json_object_get(r, "gain")), json_number_value(json_object_get(r, "cost")),
					 json_number_value(json_object_get(r, "cluster_before")),
					 json_number_value(json_object_get(r, "cluster_after")));
		if (id) {
			json_array_append_new(vals, json_integer(id));
			rc |= inv_run(c, "UPDATE drs_recommendations SET reason = ?, gain = ?, cost = ?, cluster_before = ?,"
					 " cluster_after = ? WHERE id = ?", vals, NULL);
		} else {
			json_array_insert_new(vals, 0, json_integer(cluster_id));
			json_array_insert_new(vals, 1, json_string(json_string_value(json_object_get(r, "vm"))));
			json_array_insert_new(vals, 2, json_string(json_string_value(json_object_get(r, "from"))));
			json_array_insert(vals, 3, to);
			json_array_append_new(vals, json_integer(inv_now_ms()));
			rc |= inv_run(c, "INSERT INTO drs_recommendations(cluster_id, vm, source, destination, reason, gain, cost,"
					 " cluster_before, cluster_after, state, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
				      vals, &id);
		}
		json_object_set_new(r, "id", json_integer(id));
		json_array_append_new(keep, json_integer(id));
	}
	char *ids = json_dumps(keep, JSON_COMPACT);
	rc |= inv_run(c, "UPDATE drs_recommendations SET state = 'superseded' WHERE cluster_id = ? AND state = 'pending'"
			 " AND id NOT IN (SELECT value FROM json_each(?))",
		      json_pack("[I, s]", (json_int_t)cluster_id, ids ? ids : "[]"), NULL);
	free(ids);
	json_decref(keep);
	/* the history stays bounded */
	rc |= inv_run(c, "DELETE FROM drs_recommendations WHERE cluster_id = ?1 AND id NOT IN"
			 " (SELECT id FROM drs_recommendations WHERE cluster_id = ?1 ORDER BY id DESC LIMIT 1000)",
		      json_pack("[I]", (json_int_t)cluster_id), NULL);
	return rc;
}

json_t *inv_drs_recs(struct center *c, int64_t cluster_id)
{
	return inv_rows(c, "SELECT * FROM drs_recommendations WHERE cluster_id = ? ORDER BY id DESC LIMIT 200",
			json_pack("[I]", (json_int_t)cluster_id));
}

json_t *inv_drs_rec(struct center *c, int64_t id)
{
	return inv_row(c, "SELECT * FROM drs_recommendations WHERE id = ?", json_pack("[I]", (json_int_t)id));
}

int inv_drs_rec_set_state(struct center *c, int64_t id, const char *state, int64_t task)
{
	return inv_run(c, "UPDATE drs_recommendations SET state = ?, task = ? WHERE id = ?",
		       json_pack("[s, o, I]", state, task ? json_integer(task) : json_null(), (json_int_t)id), NULL);
}

/* A rule's vms or hosts column that names a group (["@NAME"]) holds that
 * group's members instead, and the row gets vm_group or host_group. */
static void expand_group(struct center *c, json_t *row, const char *column, const char *key)
{
	json_t *list = json_loads(json_string_value(json_object_get(row, column)) ?: "[]", 0, NULL);
	const char *ref = json_string_value(json_array_get(list, 0));
	if (json_array_size(list) == 1 && ref && ref[0] == '@') {
		json_t *g = inv_group(c, ref + 1);
		json_object_set_new(row, key, json_string(ref + 1));
		json_object_set_new(row, column, g ? json_incref(json_object_get(g, "members")) : json_string("[]"));
		json_decref(g);
	}
	json_decref(list);
}

json_t *inv_rules(struct center *c, int64_t cluster_id)
{
	json_t *rows = cluster_id ? inv_rows(c, "SELECT r.*, cl.name AS cluster FROM rules r JOIN clusters cl ON cl.id = r.cluster_id"
						" WHERE r.cluster_id = ? ORDER BY r.id", json_pack("[I]", (json_int_t)cluster_id))
				  : inv_rows(c, "SELECT r.*, cl.name AS cluster FROM rules r JOIN clusters cl ON cl.id = r.cluster_id"
						" ORDER BY r.id", NULL);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		expand_group(c, row, "vms", "vm_group");
		expand_group(c, row, "hosts", "host_group");
	}
	return rows;
}

json_t *inv_group(struct center *c, const char *name)
{
	return inv_row(c, "SELECT g.*, cl.name AS cluster FROM drs_groups g JOIN clusters cl ON cl.id = g.cluster_id WHERE g.name = ?",
		       json_pack("[s]", name));
}

json_t *inv_groups(struct center *c, int64_t cluster_id)
{
	if (cluster_id)
		return inv_rows(c, "SELECT g.*, cl.name AS cluster FROM drs_groups g JOIN clusters cl ON cl.id = g.cluster_id"
				   " WHERE g.cluster_id = ? ORDER BY g.id", json_pack("[I]", (json_int_t)cluster_id));
	return inv_rows(c, "SELECT g.*, cl.name AS cluster FROM drs_groups g JOIN clusters cl ON cl.id = g.cluster_id ORDER BY g.id",
			NULL);
}

int inv_group_put(struct center *c, const char *name, int64_t cluster_id, const char *kind, json_t *members)
{
	return inv_run(c, "INSERT INTO drs_groups(name, cluster_id, kind, members, created_at) VALUES(?, ?, ?, ?, ?)"
			  " ON CONFLICT(name) DO UPDATE SET members = excluded.members",
		       json_pack("[s, I, s, O, I]", name, (json_int_t)cluster_id, kind, members, (json_int_t)inv_now_ms()), NULL);
}

int inv_group_delete(struct center *c, const char *name)
{
	return inv_run(c, "DELETE FROM drs_groups WHERE name = ?", json_pack("[s]", name), NULL);
}

json_t *inv_rules_naming_group(struct center *c, const char *name)
{
	char ref[NAME_LEN_MAX + 8];
	snprintf(ref, sizeof(ref), "[\"@%s\"]", name);
	return inv_rows(c, "SELECT name FROM rules WHERE vms = ?1 OR hosts = ?1 ORDER BY id", json_pack("[s]", ref));
}

int inv_rule_insert(struct center *c, const char *name, int64_t cluster_id, const char *kind, json_t *vms, json_t *hosts)
{
	return inv_run(c, "INSERT INTO rules(name, cluster_id, kind, vms, hosts, created_at) VALUES(?, ?, ?, ?, ?, ?)",
		       json_pack("[s, I, s, O, O, I]", name, (json_int_t)cluster_id, kind, vms, hosts, (json_int_t)inv_now_ms()),
		       NULL);
}

int inv_rule_delete(struct center *c, const char *name)
{
	return inv_run(c, "DELETE FROM rules WHERE name = ?", json_pack("[s]", name), NULL);
}

json_t *inv_rule(struct center *c, const char *name)
{
	return inv_row(c, "SELECT * FROM rules WHERE name = ?", json_pack("[s]", name));
}

json_t *inv_host_maintenance(struct center *c, int64_t host_id)
{
	return inv_row(c, "SELECT * FROM host_maintenance WHERE host_id = ?", json_pack("[I]", (json_int_t)host_id));
}

json_t *inv_maintenance_all(struct center *c)
{
	return inv_rows(c, "SELECT m.*, h.name AS host, h.cluster_id AS cluster_id FROM host_maintenance m"
			   " JOIN hosts h ON h.id = m.host_id ORDER BY m.host_id", NULL);
}

int inv_host_set_maintenance(struct center *c, int64_t host_id, const char *state, bool evacuate_powered_off,
			     int64_t timeout_s, int64_t started_at, const char *reason)
{
	if (!state)
		return inv_run(c, "DELETE FROM host_maintenance WHERE host_id = ?", json_pack("[I]", (json_int_t)host_id), NULL);
	return inv_run(c, "INSERT OR REPLACE INTO host_maintenance(host_id, state, evacuate_powered_off, timeout_s, started_at,"
			  " reason) VALUES(?, ?, ?, ?, ?, ?)",
		       json_pack("[I, s, i, I, I, s?]", (json_int_t)host_id, state, evacuate_powered_off ? 1 : 0,
				 (json_int_t)timeout_s, (json_int_t)started_at, reason),
		       NULL);
}

json_t *inv_vms_on_host(struct center *c, int64_t host_id)
{
	return inv_rows(c, VM_ROWS " WHERE v.host_id = ? ORDER BY v.id", json_pack("[I]", (json_int_t)host_id));
}

/* ---- netchecks: the last network check of each host pair and service ---- */

json_t *inv_netcheck(struct center *c, int64_t source_id, int64_t destination_id, const char *service)
{
	return inv_row(c, "SELECT * FROM netchecks WHERE source_id = ? AND destination_id = ? AND service = ?",
		       json_pack("[I, I, s]", (json_int_t)source_id, (json_int_t)destination_id, service));
}

json_t *inv_netchecks(struct center *c)
{
	return inv_rows(c, "SELECT n.*, s.name AS source, d.name AS destination FROM netchecks n"
			   " JOIN hosts s ON s.id = n.source_id JOIN hosts d ON d.id = n.destination_id"
			   " ORDER BY n.checked_at DESC", NULL);
}

int inv_netcheck_set(struct center *c, int64_t source_id, int64_t destination_id, const char *service, bool ok,
		     bool reachable, json_t *result)
{
	char *text = json_dumps(result, JSON_COMPACT);
	int rc = inv_run(c, "INSERT OR REPLACE INTO netchecks(source_id, destination_id, service, ok, reachable, result, checked_at)"
			    " VALUES(?, ?, ?, ?, ?, ?, ?)",
			 json_pack("[I, I, s, i, i, s, I]", (json_int_t)source_id, (json_int_t)destination_id, service, ok ? 1 : 0, reachable ? 1 : 0,
				   text ? text : "{}", (json_int_t)inv_now_ms()), NULL);
	free(text);
	return rc;
}
