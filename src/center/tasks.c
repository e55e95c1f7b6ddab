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
	return inv_task_insert(c, kind, json_integer_value(json_object_get(vm_row, "id")),
			       json_string_value(json_object_get(vm_row, "name")), state, src, dst);
}

/* detail is copied into the task (the caller keeps its reference). */
void task_update(struct center *c, int64_t id, const char *stage, double progress, json_t *detail)
{
	inv_task_update(c, id, stage, progress, detail);
}

/* result is copied into the task (the caller keeps its reference). */
void task_finish(struct center *c, int64_t id, bool ok, const char *message, json_t *result)
{
	inv_task_finish(c, id, ok, message, result);
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
	json_t *row = inv_task(c, id);
	return row ? task_view(row) : NULL;
}

json_t *task_list(struct center *c, int limit)
{
	json_t *rows = inv_tasks_recent(c, limit);
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
		task_view(r);
	return rows;
}
