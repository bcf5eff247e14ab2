/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A map from device ids to pointers: the one lookup structure for per-device state, used by
 * the detector on every reading, by the offline analysis for its groups, and by whatever keeps
 * devices next. Keys are device ids (or device types): 1 to DEVICE_ID_MAX bytes, passed in a
 * buffer of DEVICE_ID_MAX + 1 bytes such as Reading.device, NUL-terminated within it; bytes after
 * the NUL are ignored. The map copies keys, so a key's buffer may change once the call returns.
 * Values may not be NULL.
 */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"
#include "reading.h"

typedef struct IdMap IdMap;

int idmap_new(IdMap **ret);
/* Frees the map, not its values. */
IdMap *idmap_free(IdMap *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(IdMap *, idmap_free);

/* NULL when absent, or when id is empty or not terminated within its buffer. */
void *idmap_get(const IdMap *m, const char id[static DEVICE_ID_MAX + 1]);
/* 0, -EEXIST if the id is present, -EINVAL for an empty or unterminated id or a NULL value, or
 * -ENOMEM. */
int idmap_put(IdMap *m, const char id[static DEVICE_ID_MAX + 1], void *value);
/* Removes the entry and returns its value, or NULL if the id is absent. */
void *idmap_remove(IdMap *m, const char id[static DEVICE_ID_MAX + 1]);
size_t idmap_size(const IdMap *m);

/* Iteration in no particular order: start with *i = 0; returns false at the end. The map must
 * not change during the iteration (removal moves entries). */
bool idmap_iterate(const IdMap *m, size_t *i, void **ret_value);

#define IDMAP_FOREACH(v, m) for (size_t _i_ = 0; idmap_iterate((m), &_i_, (void **) &(v));)
