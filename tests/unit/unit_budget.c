/* Unit test: the migration cost budget's queue (src/center/budget.c):
 * which waiting migration may start, its place in the line and the host it
 * waits for, with live (cost 1) and storage (cost 4) moves against a
 * per-host budget of 8 (4 on host "small"). */
#include "center/center.h"
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(name, cond, ...)                                        \
	do {                                                          \
		if (cond) {                                           \
			printf("PASS budget: %s\n", name);            \
		} else {                                              \
			printf("FAIL budget: %s: ", name);            \
			printf(__VA_ARGS__);                          \
			printf("\n");                                 \
			failures++;                                   \
		}                                                     \
	} while (0)

static int budget_of(void *ctx, const char *host)
{
	return !strcmp(host, "small") ? 4 : 8;
}

static struct budget_entry entries[32];
static int nentries;

/* Appends an entry to the list (in arrival order). */
static struct budget_entry *add(const char *src, const char *dst, int cost, bool running)
{
	struct budget_entry *e = &entries[nentries];
	memset(e, 0, sizeof(*e));
	e->task = ++nentries;
	e->cost = cost;
	snprintf(e->hosts[e->nhosts++], sizeof(e->hosts[0]), "%s", src);
	if (dst)
		snprintf(e->hosts[e->nhosts++], sizeof(e->hosts[0]), "%s", dst);
	e->running = running;
	if (nentries > 1)
		entries[nentries - 2].next = e;
	return e;
}

int main(void)
{
	int blocking, pos;

	/* hA runs 7 live moves (7 of 8 in use): one more fits, a storage move (4) does not */
	nentries = 0;
	for (int i = 0; i < 7; i++)
		add("hA", i % 2 ? "hB" : "hC", 1, true);
	struct budget_entry *storage = add("hA", "hB", 4, false);
	struct budget_entry *live = add("hA", "hC", 1, false);
	struct budget_entry *other = add("hD", "hE", 1, false);
	CHECK("cost in use on hA: 7 live moves", budget_in_use(entries, "hA", 8) == 7, "%d", budget_in_use(entries, "hA", 8));
	CHECK("cost in use on hB: 3 of them", budget_in_use(entries, "hB", 8) == 3, "%d", budget_in_use(entries, "hB", 8));
	pos = budget_decide(entries, storage, budget_of, NULL, &blocking);
	CHECK("a storage move (4) waits for hA (7 + 4 > 8), first in line", pos == 1 && blocking == 0, "pos %d blocking %d", pos,
	      blocking);
	pos = budget_decide(entries, live, budget_of, NULL, &blocking);
	CHECK("a live move behind it waits too, although it would fit: second in line for hA", pos == 2 && blocking == 0,
	      "pos %d blocking %d", pos, blocking);
	pos = budget_decide(entries, other, budget_of, NULL, &blocking);
	CHECK("a move between other hosts starts at once", pos == 0, "pos %d", pos);

	/* four of the live moves end: the storage move fits (3 + 4 <= 8) */
	struct budget_entry *head = &entries[4]; /* the first four left the list */
	pos = budget_decide(head, storage, budget_of, NULL, &blocking);
	CHECK("3 of 8 in use: the storage move starts", pos == 0, "pos %d", pos);
	storage->running = true;
	pos = budget_decide(head, live, budget_of, NULL, &blocking);
	CHECK("then the live move (3 + 4 + 1 = 8) starts too", pos == 0, "pos %d", pos);

	/* a storage move above a small host's budget runs alone there */
	nentries = 0;
	add("small", "hB", 1, true);
	struct budget_entry *big = add("small", "hB", 6, false);
	pos = budget_decide(entries, big, budget_of, NULL, &blocking);
	CHECK("a cost above the whole budget waits until the host is free", pos == 1 && blocking == 0, "pos %d", pos);
	head = big; /* the first left the list */
	pos = budget_decide(head, big, budget_of, NULL, &blocking);
	CHECK("... and then runs alone", pos == 0, "pos %d", pos);
	big->running = true;
	CHECK("it takes the whole budget of the small host (4), 6 of hB's 8", budget_in_use(head, "small", 4) == 4 &&
	      budget_in_use(head, "hB", 8) == 6, "%d %d", budget_in_use(head, "small", 4), budget_in_use(head, "hB", 8));
	struct budget_entry *next = add("hB", "hC", 4, false);
	pos = budget_decide(head, next, budget_of, NULL, &blocking);
	CHECK("a storage move from hB (6 + 4 > 8) waits for hB", pos == 1 && blocking == 0, "pos %d blocking %d", pos, blocking);
	printf("unit_budget: %d failures\n", failures);
	return failures != 0;
}
