/* Concurrency of migrations as a cost budget, as vCenter limits them: each
 * host has a budget of migration cost (its cluster's
 * max_migrations_per_host, else the controller's --max-migrations-per-host,
 * default 8); a live or cold move costs BUDGET_COST_MOVE on its source and
 * on its destination, a move that copies disks (shared-nothing, or a disk
 * moved between datastores of one host) BUDGET_COST_STORAGE. A task that
 * does not fit waits in the queue, in the order tasks arrived: it starts
 * when its cost fits within the budget of each of its hosts and no task
 * that arrived before it waits for one of those hosts, so that a storage
 * move is not starved by a stream of cheaper ones. While it waits its
 * stage says its place in the line and which host it waits for. A cost
 * above a host's whole budget is taken as the whole budget (the task then
 * runs alone there). */
#include "center/center.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool shares_host(const struct budget_entry *a, const struct budget_entry *b)
{
	for (int i = 0; i < a->nhosts; i++)
		for (int k = 0; k < b->nhosts; k++)
			if (!strcmp(a->hosts[i], b->hosts[k]))
				return true;
	return false;
}

static int cost_on(const struct budget_entry *e, int budget)
{
	return e->cost < budget ? e->cost : budget;
}

int budget_in_use(const struct budget_entry *list, const char *host, int budget)
{
	int used = 0;
	for (const struct budget_entry *e = list; e; e = e->next)
		if (e->running)
			for (int i = 0; i < e->nhosts; i++)
				if (!strcmp(e->hosts[i], host))
					used += cost_on(e, budget);
	return used;
}

int budget_decide(const struct budget_entry *list, const struct budget_entry *e, int (*budget_of)(void *ctx, const char *host),
		  void *ctx, int *blocking_host)
{
	int position = 1;
	*blocking_host = -1;
	for (const struct budget_entry *o = list; o && o != e; o = o->next)
		if (!o->running && shares_host(o, e))
			position++;
	for (int i = 0; i < e->nhosts; i++) {
		int b = budget_of(ctx, e->hosts[i]);
		if (budget_in_use(list, e->hosts[i], b) + cost_on(e, b) > b) {
			*blocking_host = i;
			return position;
		}
	}
	if (position > 1) { /* an earlier task waits for one of these hosts: it goes first */
		for (const struct budget_entry *o = list; o && o != e; o = o->next)
			if (!o->running && shares_host(o, e)) {
				for (int i = 0; i < e->nhosts; i++)
					for (int k = 0; k < o->nhosts; k++)
						if (!strcmp(e->hosts[i], o->hosts[k]) && *blocking_host < 0)
							*blocking_host = i;
				break;
			}
		return position;
	}
	return 0;
}

/* The budget of a host: its cluster's limit, else the controller's. Caller holds c->lock. */
static int host_budget(void *ctx, const char *host)
{
	struct center *c = ctx;
	int budget = c->max_migrations_per_host;
	json_t *h = inv_host(c, host);
	json_t *cl = h ? inv_cluster_by_id(c, json_integer_value(json_object_get(h, "cluster_id"))) : NULL;
	if (json_is_integer(json_object_get(cl, "max_migrations_per_host")) &&
	    json_integer_value(json_object_get(cl, "max_migrations_per_host")) > 0)
		budget = (int)json_integer_value(json_object_get(cl, "max_migrations_per_host"));
	json_decref(h);
	json_decref(cl);
	return budget;
}

void budget_acquire(struct center *c, int64_t task, const char *src, const char *dst, int cost)
{
	struct budget_entry *e = calloc(1, sizeof(*e));
	int last_position = -1, last_used = -1;

	if (!e) /* cannot queue: run without a place in the line rather than not at all */
		return;
	e->task = task;
	e->cost = cost;
	if (src && *src)
		snprintf(e->hosts[e->nhosts++], sizeof(e->hosts[0]), "%s", src);
	if (dst && *dst && (!src || strcmp(src, dst)))
		snprintf(e->hosts[e->nhosts++], sizeof(e->hosts[0]), "%s", dst);
	pthread_mutex_lock(&c->lock);
	struct budget_entry **tail = &c->budget;
	while (*tail)
		tail = &(*tail)->next;
	*tail = e;
	for (;;) {
		int blocking;
		int position = budget_decide(c->budget, e, host_budget, c, &blocking);
		if (!position) {
			e->running = true;
			break;
		}
		const char *h = e->hosts[blocking < 0 ? 0 : blocking];
		int b = host_budget(c, h), used = budget_in_use(c->budget, h, b);
		if (position != last_position || used != last_used) {
			char stage[200];
			snprintf(stage, sizeof(stage), "queued: %d%s in line for host %s (migration cost %d of its budget %d in use; "
				 "this task costs %d)", position, position == 1 ? "st" : position == 2 ? "nd" : position == 3 ? "rd" : "th",
				 h, used, b, cost_on(e, b));
			json_t *detail = json_pack("{s:i, s:s, s:i, s:i, s:i}", "queue_position", position, "waiting_for", h,
						   "budget", b, "in_use", used, "cost", e->cost);
			task_update(c, task, stage, 0, detail);
			json_decref(detail);
			last_position = position;
			last_used = used;
		}
		pthread_mutex_unlock(&c->lock);
		sleep_ns(100000000);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
}

void budget_release(struct center *c, int64_t task)
{
	pthread_mutex_lock(&c->lock);
	for (struct budget_entry **p = &c->budget; *p; p = &(*p)->next)
		if ((*p)->task == task) {
			struct budget_entry *e = *p;
			*p = e->next;
			free(e);
			break;
		}
	pthread_mutex_unlock(&c->lock);
}
