/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A map from device ids (or any short NUL-terminated key) to pointers: the one lookup structure
 * for per-device state in the detector, the offline analysis and whatever keeps devices next.
 * Open addressing with linear probing and backward-shift deletion, at most half full. Keys are
 * not copied: a key must stay valid and unchanged while its entry is in the map (it usually
 * lives in the value). Values may not be NULL.
 */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

typedef struct IdMap IdMap;

int idmap_new(IdMap **ret);
/* Frees the map, not its keys or values. */
IdMap *idmap_free(IdMap *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(IdMap *, idmap_free);

void *idmap_get(const IdMap *m, const char *key);
/* 0, -EEXIST if the key is present, -EINVAL for a NULL value, or -ENOMEM. */
int idmap_put(IdMap *m, const char *key, void *value);
/* Removes the entry and returns its value, or NULL if the key is absent. */
void *idmap_remove(IdMap *m, const char *key);
size_t idmap_size(const IdMap *m);

/* Iteration in no particular order: start with *i = 0; returns false at the end. The map must
 * not change during the iteration (removal moves entries). */
bool idmap_iterate(const IdMap *m, size_t *i, void **ret_value);

#define IDMAP_FOREACH(v, m) for (size_t _i_ = 0; idmap_iterate((m), &_i_, (void **) &(v));)
