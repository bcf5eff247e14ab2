/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sink cursors: registering sinks, handing out readings in id order from each sink's
 * in-memory position, acknowledgements that move its persistent cursor, and rewinding to the
 * cursor. Cursors are only changed in memory here and marked dirty; store_write() (store.c)
 * writes them with the next commit, which store_schedule() arranges.
 */

#include <limits.h>

#include "store-internal.h"

bool store_sink_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > STORE_SINK_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (name[i] <= ' ' || name[i] > '~')
                        return false;
        return true;
}

static StoreDevice *store_device_by_index(const Store *s, int64_t index) {
        size_t lo = 0, hi = s->n_devices;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->devices[mid]->index == index)
                        return s->devices[mid];
                if (s->devices[mid]->index < index)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static Sink *store_sink_find(const Store *s, const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < s->n_sinks; i++)
                if (streq(s->sinks[i].name, name))
                        return s->sinks + i;
        return NULL;
}

int store_sink_add(Store *s, const char *name) {
        Sink *sink, *a;

        assert(s);

        if (!store_sink_name_is_valid(name))
                return -EINVAL;

        sink = store_sink_find(s, name);
        if (sink) {
                if (!sink->enabled) {
                        sink->enabled = true;
                        sink->handed_out = sink->cursor;
                        sink->dirty = true;
                        store_schedule(s);
                }
                return 0;
        }

        a = reallocarray(s->sinks, s->n_sinks + 1, sizeof(Sink));
        if (!a)
                return -ENOMEM;
        s->sinks = a;
        sink = s->sinks + s->n_sinks++;
        *sink = (Sink) {
                .cursor = s->last_id,
                .handed_out = s->last_id,
                .enabled = true,
                .dirty = true,
        };
        strcpy(sink->name, name);
        store_schedule(s);
        return 1;
}

int store_set_sinks(Store *s, char *const *names) {
        int k;

        assert(s);

        for (char *const *n = names; n && *n; n++)
                if (!store_sink_name_is_valid(*n))
                        return -EINVAL;

        for (size_t i = 0; i < s->n_sinks; i++) {
                Sink *sink = s->sinks + i;
                bool named = false;

                for (char *const *n = names; n && *n && !named; n++)
                        named = streq(*n, sink->name);
                if (sink->enabled && !named) {
                        sink->enabled = false;
                        sink->dirty = true;
                        store_schedule(s);
                }
        }

        for (char *const *n = names; n && *n; n++) {
                k = store_sink_add(s, *n);
                if (k < 0)
                        return k;
        }
        return 0;
}

int store_sink_fetch(Store *s, const char *name, StoredReading *ret, size_t max) {
        sqlite3_stmt *st = s->stmt[STMT_FETCH];
        Sink *sink;
        size_t n = 0;
        int rc = SQLITE_DONE;

        assert(s);
        assert(ret || max == 0);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        if (!sink->enabled)
                return -ESTALE;

        max = MIN(max, (size_t) INT_MAX);
        (void) sqlite3_bind_int64(st, 1, (sqlite3_int64) sink->handed_out);
        (void) sqlite3_bind_int64(st, 2, (sqlite3_int64) max);
        while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                StoredReading *out = ret + n++;
                Reading *r = &out->reading;
                const StoreDevice *d = store_device_by_index(s, sqlite3_column_int64(st, 1));

                out->id = (uint64_t) sqlite3_column_int64(st, 0);
                memset(r, 0, sizeof(*r));
                if (d) {
                        memcpy(r->device, d->name, sizeof(r->device));
                        memcpy(r->type, d->type, sizeof(r->type));
                }
                r->time_usec = (uint64_t) sqlite3_column_int64(st, 2);
                r->seq = (uint64_t) sqlite3_column_int64(st, 3);
                r->channels = (uint32_t) sqlite3_column_int64(st, 4) & CHANNELS_ALL;
                for (Channel c = 0; c < _CHANNEL_MAX; c++)
                        if (r->channels & CHANNEL_BIT(c))
                                r->values[c] = store_column_double_or_nan(st, 5 + c);
                sink->handed_out = out->id;
        }
        if (n < max && rc != SQLITE_DONE) {
                int k = store_errno(s->db, rc);

                (void) sqlite3_reset(st);
                return n > 0 ? (int) n : k;
        }
        (void) sqlite3_reset(st);
        return (int) n;
}

int store_sink_ack(Store *s, const char *name, uint64_t upto_id) {
        Sink *sink;

        assert(s);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        if (upto_id > s->last_id)
                return -EINVAL;
        if (upto_id <= sink->cursor)
                return 0;

        sink->cursor = upto_id;
        sink->handed_out = MAX(sink->handed_out, upto_id);
        sink->dirty = true;
        store_schedule(s);
        return 0;
}

int store_sink_rewind(Store *s, const char *name) {
        Sink *sink;

        assert(s);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        sink->handed_out = sink->cursor;
        return 0;
}

int store_sink_get(const Store *s, const char *name, StoreSinkInfo *ret) {
        const Sink *sink;

        assert(s);
        assert(ret);

        sink = store_sink_find(s, name);
        if (!sink)
                return -ENOENT;
        *ret = (StoreSinkInfo) {
                .cursor = sink->cursor,
                .handed_out = sink->handed_out,
                .backlog = s->last_id >= s->first_id ? s->last_id - MAX(sink->cursor, s->first_id - 1) : 0,
                .enabled = sink->enabled,
        };
        return 0;
}
