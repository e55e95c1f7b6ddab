/* Long-running tasks (power on, migrations, reconfiguration): one row per
 * operation in the inventory with its state (queued, running, succeeded,
 * failed), stage, progress (0..1), live detail (the migration's latest
 * figures), final message and result, and timestamps. Clients poll them
 * (`glide task watch`). The one-time migration key is never part of a task. */
#include "center/center.h"
#include "common/util.h"
#include <stdlib.h>
#include <string.h>

int64_t task_create(struct center *c, const char *kind, json_t *vm_row, const char *src, const char *dst, const char *state)
{
	int64_t id = 0, now = inv_now_ms();
	inv_run(c,
		"INSERT INTO tasks(kind, vm_id, vm_name, state, stage, source_host, dest_host, created_at, started_at)"
		" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
		json_pack("[s, O, O, s, s, s?, s?, I, I]", kind, json_object_get(vm_row, "id"), json_object_get(vm_row, "name"),
			  state, state, src, dst, (json_int_t)now, (json_int_t)now),
		&id);
	return id;
}

void task_update(struct center *c, int64_t id, const char *stage, double progress, json_t *detail)
{
	inv_run(c, "UPDATE tasks SET state = 'running', stage = ?, progress = ?, detail = ? WHERE id = ? AND state IN ('queued', 'running')",
		json_pack("[s, f, O?, I]", stage, progress, detail, (json_int_t)id), NULL);
}

void task_finish(struct center *c, int64_t id, bool ok, const char *message, json_t *result)
{
	inv_run(c,
		"UPDATE tasks SET state = ?, stage = ?, progress = CASE WHEN ? THEN 1.0 ELSE progress END, message = ?,"
		" result = ?, ended_at = ? WHERE id = ?",
		json_pack("[s, s, i, s?, O?, I, I]", ok ? "succeeded" : "failed", ok ? "done" : "failed", ok, message, result,
			  (json_int_t)inv_now_ms(), (json_int_t)id),
		NULL);
	glide_log("center", "task %lld %s: %s", (long long)id, ok ? "succeeded" : "failed", message ? message : "");
}

static json_t *task_view(json_t *row)
{
	const char *keys[] = { "detail", "result" };
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const char *s = json_string_value(json_object_get(row, keys[i]));
		if (s) {
			json_t *j = json_loads(s, 0, NULL);
			json_object_set_new(row, keys[i], j ? j : json_null());
		}
	}
	json_t *vm = json_object_get(row, "vm_name");
	json_object_set(row, "vm", vm);
	int64_t s0 = json_integer_value(json_object_get(row, "started_at"));
	int64_t e0 = json_integer_value(json_object_get(row, "ended_at"));
	if (s0)
		json_object_set_new(row, "duration_ms", json_integer((e0 ? e0 : inv_now_ms()) - s0));
	return row;
}

json_t *task_json(struct center *c, int64_t id)
{
	json_t *row = inv_row(c, "SELECT * FROM tasks WHERE id = ?", json_pack("[I]", (json_int_t)id));
	return row ? task_view(row) : NULL;
}

json_t *task_list(struct center *c, int limit)
{
	json_t *rows = inv_rows(c, "SELECT * FROM tasks ORDER BY id DESC LIMIT ?", json_pack("[i]", limit));
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
		task_view(r);
	return rows;
}
