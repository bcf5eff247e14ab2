/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device registry: an IdMap from device id to Device, filled from the pipeline. Updating
 * a device is a lookup and a few stores per reading, so it costs nothing next to the
 * detector; publishing the changes is the bus glue's job, rate-limited there.
 */

#include <stdio.h>
#include <string.h>

#include "device.h"

static const char *const device_kind_table[_DEVICE_KIND_MAX] = {
        [DEVICE_KIND_RUUVI] = "ruuvi",
        [DEVICE_KIND_SENSORTAG] = "sensortag",
        [DEVICE_KIND_THINGY52] = "thingy52",
        [DEVICE_KIND_PHONE] = "phone",
        [DEVICE_KIND_REPLAY] = "replay",
};

const char *device_kind_to_string(DeviceKind k) {
        if (k < 0 || k >= _DEVICE_KIND_MAX)
                return NULL;
        return device_kind_table[k];
}

DeviceKind device_kind_from_string(const char *s) {
        if (!s)
                return _DEVICE_KIND_INVALID;
        for (DeviceKind k = 0; k < _DEVICE_KIND_MAX; k++)
                if (streq(s, device_kind_table[k]))
                        return k;
        return _DEVICE_KIND_INVALID;
}

DeviceKind device_kind_from_type(const char *type) {
        DeviceKind k = device_kind_from_string(type);

        return k < 0 ? DEVICE_KIND_REPLAY : k;
}

static Device *device_free(Device *d) {
        if (!d)
                return NULL;
        free(d->name);
        return mfree(d);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Device *, device_free);

int device_registry_new(size_t max, DeviceRegistry **ret) {
        _cleanup_(device_registry_freep) DeviceRegistry *reg = NULL;
        int k;

        if (max == 0)
                return -EINVAL;

        reg = new0(DeviceRegistry, 1);
        if (!reg)
                return -ENOMEM;
        reg->max = max;
        k = idmap_new(&reg->devices);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(reg);
        return 0;
}

DeviceRegistry *device_registry_free(DeviceRegistry *reg) {
        Device *d;

        if (!reg)
                return NULL;
        if (reg->devices)
                IDMAP_FOREACH(d, reg->devices)
                        device_free(d);
        idmap_free(reg->devices);
        return mfree(reg);
}

Device *device_registry_get(const DeviceRegistry *reg, const char *id) {
        char key[DEVICE_ID_MAX + 1] = {};
        size_t n = strnlen(id, DEVICE_ID_MAX + 1);

        /* The map wants a buffer of DEVICE_ID_MAX + 1 bytes; id may be any string (a path). */
        if (n == 0 || n > DEVICE_ID_MAX)
                return NULL;
        memcpy(key, id, n);
        return idmap_get(reg->devices, key);
}

size_t device_registry_size(const DeviceRegistry *reg) {
        return idmap_size(reg->devices);
}

static int device_registry_add(DeviceRegistry *reg, const Reading *r, Device **ret) {
        _cleanup_(device_freep) Device *d = NULL;
        int k;

        if (idmap_size(reg->devices) >= reg->max)
                return -ENOSPC;

        d = new0(Device, 1);
        if (!d)
                return -ENOMEM;
        memcpy(d->id, r->device, sizeof(d->id));
        memcpy(d->type, r->type, sizeof(d->type));
        d->type[DEVICE_ID_MAX] = '\0';
        d->kind = device_kind_from_type(d->type);
        d->rssi = DEVICE_RSSI_UNKNOWN;

        k = idmap_put(reg->devices, d->id, d);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(d);
        return 0;
}

int device_registry_add_reading(DeviceRegistry *reg, const Reading *r, uint64_t now_usec, Device **ret) {
        bool created = false;
        Device *d;
        int k;

        if (!device_id_is_valid(r->device, strnlen(r->device, sizeof(r->device))))
                return -EINVAL;

        d = idmap_get(reg->devices, r->device);
        if (!d) {
                k = device_registry_add(reg, r, &d);
                if (k == -ENOSPC)
                        reg->untracked++;
                if (k < 0)
                        return k;
                created = true;
        } else if (strncmp(d->type, r->type, sizeof(d->type)) != 0) {
                memcpy(d->type, r->type, sizeof(d->type));
                d->type[DEVICE_ID_MAX] = '\0';
                d->kind = device_kind_from_type(d->type);
                d->changed |= DEVICE_CHANGED_TYPE;
        }

        d->readings_received++;
        d->last_seen_usec = now_usec;
        d->changed |= DEVICE_CHANGED_SEEN;
        if ((d->channels | (r->channels & CHANNELS_ALL)) != d->channels) {
                d->channels |= r->channels & CHANNELS_ALL;
                d->changed |= DEVICE_CHANGED_CHANNELS;
        }

        if (ret)
                *ret = d;
        return created;
}

int device_registry_add_anomaly(DeviceRegistry *reg, const AnomalyEvent *e, Device **ret) {
        Device *d = device_registry_get(reg, e->device);

        if (!d)
                return 0;
        d->anomalies_detected++;
        d->changed |= DEVICE_CHANGED_ANOMALIES;
        if (ret)
                *ret = d;
        return 1;
}

int device_set_radio(Device *d, const char *address, int16_t rssi, const char *name) {
        assert(d);

        if (address && !streq(d->address, address)) {
                snprintf(d->address, sizeof(d->address), "%s", address);
                d->changed |= DEVICE_CHANGED_RADIO;
        }
        if (d->rssi != rssi) {
                d->rssi = rssi;
                d->changed |= DEVICE_CHANGED_RADIO;
        }
        if (!streq_ptr(d->name, name)) {
                char *copy = NULL;

                if (name) {
                        copy = strdup(name);
                        if (!copy)
                                return -ENOMEM;
                }
                free(d->name);
                d->name = copy;
                d->changed |= DEVICE_CHANGED_RADIO;
        }
        return 0;
}

void device_set_connected(Device *d, bool connected) {
        assert(d);

        if (d->connected != connected) {
                d->connected = connected;
                d->changed |= DEVICE_CHANGED_RADIO;
        }
}

static int device_compare(const void *a, const void *b) {
        const Device *const *x = a, *const *y = b;

        return strcmp((*x)->id, (*y)->id);
}

int device_registry_list(const DeviceRegistry *reg, Device ***ret) {
        size_t n = idmap_size(reg->devices), i = 0;
        _cleanup_free_ Device **list = NULL;
        Device *d;

        if (n == 0) {
                *ret = NULL;
                return 0;
        }

        list = new(Device *, n);
        if (!list)
                return -ENOMEM;
        IDMAP_FOREACH(d, reg->devices)
                list[i++] = d;
        qsort(list, n, sizeof(Device *), device_compare);

        *ret = TAKE_PTR(list);
        return (int) n;
}
