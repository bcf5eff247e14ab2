/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The BlueZ client (see ble.h). State comes in three layers, each dropped with what it mirrors:
 * whether org.bluez has an owner (matches on NameOwnerChanged), the adapters that owner
 * exports (one BleAdapter each, with its pending call and retry timer), and our own memory of
 * devices by address (sequence state), which outlives both. The matches are added before the
 * first GetNameOwner and GetManagedObjects: the bus handles our messages in order, so no signal
 * can fall between the snapshot and the matches.
 *
 * Adverts: with DuplicateData=true, BlueZ emits PropertiesChanged(ManufacturerData) on every
 * advert heard, so the hot path is one signal, one dictionary walk, one decode and one lookup.
 * Devices without key 0x0499 cost a walk over their changed properties and nothing else.
 */

#include <ctype.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "ble-monitor.h"
#include "ble.h"
#include "bus-properties.h"
#include "idmap.h"
#include "link.h"
#include "profile-ruuvi.h"
#include "sequence.h"

#define BLUEZ_NAME "org.bluez"
#define BLUEZ_ADAPTER "org.bluez.Adapter1"
#define BLUEZ_DEVICE "org.bluez.Device1"
#define BLUEZ_CHARACTERISTIC "org.bluez.GattCharacteristic1"
#define BLUEZ_ERROR_IN_PROGRESS "org.bluez.Error.InProgress"
#define BLUEZ_ERROR_NOT_READY "org.bluez.Error.NotReady"

#define BLE_CALL_TIMEOUT_USEC (UINT64_C(10) * 1000 * 1000)
#define BLE_RETRY_MIN_USEC (UINT64_C(1) * 1000 * 1000)
#define BLE_RETRY_MAX_USEC (UINT64_C(30) * 1000 * 1000)
/* After Discovering=false we did not ask for: BlueZ itself restarts a stopped scan after 5 s,
 * we go first but not in a loop. */
#define BLE_RESTART_USEC (UINT64_C(1) * 1000 * 1000)

/* Adverts are at most 31 bytes; a longer value is not an advert we can read. */
#define BLE_ADVERT_MAX 31

typedef struct BleAdapter BleAdapter;

static inline bool isempty(const char *s) {
        return !s || !*s;
}

typedef struct BleDevice {
        Ble *ble;
        char key[DEVICE_ID_MAX + 1];       /* the address in lower-case hex, no colons */
        char address[18];                  /* "AA:BB:CC:DD:EE:FF" */
        int16_t rssi;
        char name[BLE_NAME_MAX + 1];       /* "" when none */
        const Profile *profile;            /* NULL: Allow=/Deny= exclude it, nothing more is done */
        Sequence seq;                      /* of adverts */
        size_t last_size;                  /* the last advert, for formats without a sequence */
        uint8_t last_data[BLE_ADVERT_MAX];

        /* GATT devices only. */
        Link *link;
        bool present;                      /* its Device1 object exists */
        uint64_t ticket;                   /* when it started waiting for a slot: first come, first served */
        bool queued;                       /* the wait was reported */
} BleDevice;

struct BleAdapter {
        Ble *ble;
        char *path;
        const char *name;                  /* within path: "hci0" */
        bool powered;
        bool discovering;                  /* as BlueZ last said */
        bool started;                      /* our StartDiscovery succeeded and was not undone */
        sd_bus_slot *call;                 /* the pending SetDiscoveryFilter or StartDiscovery */
        sd_event_source *retry;
        uint64_t retry_usec;               /* the next failure's delay */
        sd_bus_slot *power_call;           /* the pending Set(Powered) */
        sd_event_source *stall;            /* StallTimeout= check */
        uint64_t last_heard_usec;          /* monotonic time of the last advert heard */
        unsigned stalls;                   /* recoveries since the last advert heard */
        bool cycling;                      /* powered off by us: power on when that is done */
        BleMonitor *monitor;               /* passive scanning: registering or active */
        bool monitor_refused;              /* no monitor on this adapter: discovery */
};

struct Ble {
        sd_bus *bus;
        sd_event *event;
        BleCallbacks cb;
        void *userdata;
        char **wanted;                     /* adapter names; NULL: all */
        char **allow, **deny;              /* addresses and kinds; NULL: all, none */
        unsigned max_connections;
        bool power_on, passive;
        uint64_t stall_timeout_usec;
        ProfileSettings settings;
        sd_event_source *grant;            /* deferred: hands free slots to waiting links */
        uint64_t next_ticket;

        sd_bus_slot *match_owner, *match_added, *match_removed, *match_changed;
        sd_bus_slot *call;                 /* GetNameOwner or GetManagedObjects */
        sd_event_source *retry;            /* GetManagedObjects after a failure */
        uint64_t retry_usec;
        bool present;                      /* org.bluez has an owner */
        bool was_present;                  /* it had one before: its return is a recovery */
        bool enumerating;                  /* GetManagedObjects is pending */

        BleAdapter **adapters;
        size_t n_adapters;
        IdMap *devices;                    /* key -> BleDevice */

        BleStats stats;
};

static void ble_event(Ble *b, BleEvent event, const char *object, int error, const char *message) {
        const BleEventInfo e = {
                .event = event,
                .object = object,
                .error = error,
                .message = message,
        };

        if (b->cb.on_event)
                b->cb.on_event(&e, b->userdata);
}

static bool list_contains(char **l, const char *s) {
        for (; l && *l; l++)
                if (strcasecmp(*l, s) == 0)
                        return true;
        return false;
}

/* Allow= and Deny= by address or kind; Deny= wins. */
static bool ble_allows(const Ble *b, const char *address, const Profile *p) {
        if (list_contains(b->deny, address) || list_contains(b->deny, p->name))
                return false;
        return !b->allow || list_contains(b->allow, address) || list_contains(b->allow, p->name);
}

bool ble_address_is_valid(const char *s) {
        if (!s || strlen(s) != 17)
                return false;
        for (size_t i = 0; i < 17; i++)
                if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char) s[i]))
                        return false;
        return true;
}

static bool ble_wants(const Ble *b, const char *name) {
        if (!b->wanted)
                return true;
        for (char **w = b->wanted; *w; w++)
                if (streq(*w, name))
                        return true;
        return false;
}

static BleAdapter *adapter_free(BleAdapter *a) {
        if (!a)
                return NULL;
        sd_bus_slot_unref(a->call);
        sd_bus_slot_unref(a->power_call);
        ble_monitor_free(a->monitor);
        sd_event_source_disable_unref(a->retry);
        sd_event_source_disable_unref(a->stall);
        free(a->path);
        return mfree(a);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(BleAdapter *, adapter_free);

static BleAdapter *ble_find_adapter(const Ble *b, const char *path, size_t *ret_index) {
        for (size_t i = 0; i < b->n_adapters; i++)
                if (streq(b->adapters[i]->path, path)) {
                        if (ret_index)
                                *ret_index = i;
                        return b->adapters[i];
                }
        return NULL;
}

/* The adapter a device path lies under ("/org/bluez/hci0/dev_..."), if it is one of ours. */
static BleAdapter *ble_find_parent(const Ble *b, const char *path) {
        for (size_t i = 0; i < b->n_adapters; i++) {
                size_t n = strlen(b->adapters[i]->path);

                if (strncmp(path, b->adapters[i]->path, n) == 0 && path[n] == '/')
                        return b->adapters[i];
        }
        return NULL;
}

static void ble_update_links(Ble *b);
static BleAdapter *device_adapter(const BleDevice *d);

/* Every adapter goes, and with them every device object: a device only counts as present again
 * when BlueZ shows it again, so no link calls a path BlueZ has forgotten. */
static void ble_drop_adapters(Ble *b) {
        BleDevice *d;

        for (size_t i = 0; i < b->n_adapters; i++)
                adapter_free(b->adapters[i]);
        b->adapters = mfree(b->adapters);
        b->n_adapters = 0;
        if (!b->devices)
                return;
        IDMAP_FOREACH(d, b->devices)
                d->present = false;
        ble_update_links(b);
}

static int adapter_start_discovery(BleAdapter *a);

static int on_adapter_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) adapter_start_discovery(userdata);
        return 0;
}

static void adapter_schedule(BleAdapter *a, uint64_t delay) {
        int k;

        if (!a->retry)
                k = sd_event_add_time_relative(a->ble->event, &a->retry, CLOCK_MONOTONIC, delay, 0, on_adapter_retry, a);
        else
                k = sd_event_source_set_time_relative(a->retry, delay);
        if (k >= 0)
                k = sd_event_source_set_enabled(a->retry, SD_EVENT_ONESHOT);
        if (k < 0)
                ble_event(a->ble, BLE_DISCOVERY_FAILED, a->name, k, "cannot schedule a retry");
}

/* A call failed: report it and try again later, each time twice as late. */
static void adapter_failed(BleAdapter *a, const sd_bus_error *e, int error) {
        char message[256];

        ble_event(a->ble, BLE_DISCOVERY_FAILED, a->name, error, bus_error_format(NULL, e, message, sizeof(message)));
        adapter_schedule(a, a->retry_usec);
        a->retry_usec = MIN(a->retry_usec * 2, BLE_RETRY_MAX_USEC);
}

/* NotReady: powering off, or not yet powered on. Usually Powered=false follows, which cancels the
 * retry, and Powered=true brings us back; retried quietly in case BlueZ says nothing. */
static void adapter_not_ready(BleAdapter *a) {
        adapter_schedule(a, a->retry_usec);
        a->retry_usec = MIN(a->retry_usec * 2, BLE_RETRY_MAX_USEC);
}

static int on_set_powered(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

/* Set(Powered); the reply only matters for a power cycle, which turns it back on. */
static int adapter_set_powered(BleAdapter *a, bool on) {
        a->power_call = sd_bus_slot_unref(a->power_call);
        return sd_bus_call_method_async(a->ble->bus, &a->power_call, BLUEZ_NAME, a->path,
                                        "org.freedesktop.DBus.Properties", "Set", on_set_powered, a, "ssv",
                                        BLUEZ_ADAPTER, "Powered", "b", (int) on);
}

static int on_set_powered(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BleAdapter *a = userdata;
        bool cycling = a->cycling;

        a->cycling = false;
        a->power_call = sd_bus_slot_unref(a->power_call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                char message[256];

                ble_event(a->ble, BLE_DISCOVERY_FAILED, a->name, -sd_bus_message_get_errno(reply),
                          bus_error_format("setting Powered", e, message, sizeof(message)));
                return 0;
        }
        if (cycling)
                (void) adapter_set_powered(a, true);
        return 0;
}

static int on_stop_discovery_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BleAdapter *a = userdata;

        /* Whatever it says (Failed: it had stopped already), start again. */
        a->call = sd_bus_slot_unref(a->call);
        (void) adapter_start_discovery(a);
        return 0;
}

static void adapter_watch_stall(BleAdapter *a);

/* Discovery has delivered nothing for StallTimeout= (doubled after each recovery that did not
 * help, so an empty room is not a reason to keep resetting): restart it, and if that was tried
 * already, power-cycle the adapter, unless a link on it streams, which proves the controller
 * works. */
static int on_stall_check(sd_event_source *s, uint64_t usec, void *userdata) {
        BleAdapter *a = userdata;
        Ble *b = a->ble;
        uint64_t timeout = b->stall_timeout_usec << MIN(a->stalls, 4U);
        bool streaming = false;
        BleDevice *d;
        int k;

        if (!a->started || !a->powered || a->call)
                return 0; /* not discovering now: the next start watches again */
        if (usec < a->last_heard_usec + timeout) {
                (void) sd_event_source_set_time(s, a->last_heard_usec + timeout);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }

        IDMAP_FOREACH(d, b->devices)
                if (d->link && link_get_state(d->link) == LINK_STREAMING && device_adapter(d) == a)
                        streaming = true;
        b->stats.recoveries++;
        a->stalls++;
        a->last_heard_usec = usec;
        if (a->stalls % 2 == 1 || streaming) {
                ble_event(b, BLE_DISCOVERY_STALLED, a->name, 0, NULL);
                /* Not "stopped by itself": we stop it. */
                a->started = false;
                k = sd_bus_call_method_async(b->bus, &a->call, BLUEZ_NAME, a->path, BLUEZ_ADAPTER, "StopDiscovery",
                                             on_stop_discovery_reply, a, NULL);
        } else {
                ble_event(b, BLE_ADAPTER_POWER_CYCLE, a->name, 0, NULL);
                k = adapter_set_powered(a, false);
                a->cycling = k >= 0;
        }
        if (k < 0)
                ble_event(b, BLE_DISCOVERY_FAILED, a->name, k, "cannot send the recovery call");
        return 0;
}

static void adapter_watch_stall(BleAdapter *a) {
        uint64_t now = 0;
        int k;

        if (a->ble->stall_timeout_usec == 0)
                return;
        (void) sd_event_now(a->ble->event, CLOCK_MONOTONIC, &now);
        a->last_heard_usec = MAX(a->last_heard_usec, now);
        if (!a->stall)
                k = sd_event_add_time(a->ble->event, &a->stall, CLOCK_MONOTONIC,
                                      a->last_heard_usec + a->ble->stall_timeout_usec, 0, on_stall_check, a);
        else
                k = sd_event_source_set_time(a->stall, a->last_heard_usec + a->ble->stall_timeout_usec);
        if (k >= 0)
                (void) sd_event_source_set_enabled(a->stall, SD_EVENT_ONESHOT);
}

static int on_start_discovery_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        BleAdapter *a = userdata;

        a->call = sd_bus_slot_unref(a->call);
        /* InProgress: our session exists already (one per client), which is what we want. */
        if (e && !sd_bus_error_has_name(e, BLUEZ_ERROR_IN_PROGRESS)) {
                if (sd_bus_error_has_name(e, BLUEZ_ERROR_NOT_READY))
                        adapter_not_ready(a);
                else
                        adapter_failed(a, e, -sd_bus_message_get_errno(reply));
                return 0;
        }
        a->started = true;
        a->retry_usec = BLE_RETRY_MIN_USEC;
        ble_event(a->ble, BLE_DISCOVERY_STARTED, a->name, 0, NULL);
        adapter_watch_stall(a);
        return 0;
}

static int on_set_filter_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        BleAdapter *a = userdata;
        int k;

        a->call = sd_bus_slot_unref(a->call);
        if (e) {
                if (sd_bus_error_has_name(e, BLUEZ_ERROR_NOT_READY))
                        adapter_not_ready(a);
                else
                        adapter_failed(a, e, -sd_bus_message_get_errno(reply));
                return 0;
        }

        k = sd_bus_message_new_method_call(a->ble->bus, &m, BLUEZ_NAME, a->path, BLUEZ_ADAPTER, "StartDiscovery");
        if (k >= 0)
                k = sd_bus_call_async(a->ble->bus, &a->call, m, on_start_discovery_reply, a, BLE_CALL_TIMEOUT_USEC);
        if (k < 0)
                adapter_failed(a, &SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_FAILED, "cannot send StartDiscovery"), k);
        return 0;
}

/* SetDiscoveryFilter, then StartDiscovery. BlueZ forgets both whenever the adapter powers off,
 * so this runs again after every power-on. DuplicateData must be given: BlueZ's default (false,
 * whatever the documentation says) would report each manufacturer data value once. */
static int adapter_start_discovery(BleAdapter *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int k;

        if (!a->powered || a->call || a->monitor)
                return 0;
        a->started = false;

        k = sd_bus_message_new_method_call(a->ble->bus, &m, BLUEZ_NAME, a->path, BLUEZ_ADAPTER, "SetDiscoveryFilter");
        if (k >= 0)
                k = sd_bus_message_append(m, "a{sv}", 2, "Transport", "s", "le", "DuplicateData", "b", 1);
        if (k >= 0)
                k = sd_bus_call_async(a->ble->bus, &a->call, m, on_set_filter_reply, a, BLE_CALL_TIMEOUT_USEC);
        if (k < 0) {
                adapter_failed(a, &SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_FAILED, "cannot send SetDiscoveryFilter"), k);
                return k;
        }
        return 0;
}

/* Reads a variant holding one basic value of type `type` into ret: 1, or 0 when the variant holds
 * something else (skipped: one odd property must not cost us the whole object). */
static int read_variant_basic(sd_bus_message *m, char type, void *ret) {
        const char contents[2] = { type, '\0' };
        int k;

        k = sd_bus_message_enter_container(m, 'v', contents);
        if (k == -ENXIO)
                return sd_bus_message_skip(m, "v") < 0 ? -EBADMSG : 0;
        if (k < 0)
                return k;
        k = sd_bus_message_read_basic(m, type, ret);
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 1;
}

typedef struct AdapterState {
        bool *powered, *discovering;
} AdapterState;

static int adapter_property(sd_bus_message *m, const char *name, void *userdata) {
        AdapterState *st = userdata;
        bool *field = streq(name, "Powered") ? st->powered : streq(name, "Discovering") ? st->discovering : NULL;
        int v, k;

        if (!field)
                return 0;
        k = read_variant_basic(m, 'b', &v);
        if (k > 0)
                *field = v;
        return k < 0 ? k : 1;
}

/* Reads Powered and Discovering from an a{sv} of Adapter1; *ret_* untouched when absent. */
static int adapter_read_properties(sd_bus_message *m, bool *ret_powered, bool *ret_discovering) {
        AdapterState st = { .powered = ret_powered, .discovering = ret_discovering };

        return bus_message_foreach_property(m, adapter_property, &st);
}

static void on_monitor(BleMonitor *mon, BleMonitorState state, int error, const char *message, void *userdata) {
        BleAdapter *a = userdata;

        if (state == BLE_MONITOR_ACTIVE) {
                ble_event(a->ble, BLE_PASSIVE_SCANNING, a->name, 0, NULL);
                return;
        }
        /* Unsupported, failed or released: discovery from now on, for this adapter. */
        a->monitor = ble_monitor_free(a->monitor);
        a->monitor_refused = true;
        ble_event(a->ble, BLE_PASSIVE_UNAVAILABLE, a->name, error,
                  message ?: ble_monitor_state_to_string(state));
        (void) adapter_start_discovery(a);
}

/* Passive scanning for what the profiles recognise: Ruuvi's manufacturer data, and the GATT
 * profiles' services in either list of 128-bit UUIDs. */
static int adapter_start_monitor(BleAdapter *a) {
        BleMonitorPattern patterns[BLE_MONITOR_PATTERNS_MAX];
        char root[128];
        size_t n = 0;
        int k;

        if (!a->ble->passive || a->monitor_refused || a->monitor)
                return 0;
        ble_monitor_pattern_company(RUUVI_COMPANY_ID, &patterns[n++]);
        for (ProfileKind kind = 0; kind < _PROFILE_KIND_MAX; kind++) {
                const Profile *p = profile_get(kind);

                if (!p->service_uuid || p->n_steps == 0)
                        continue;
                k = ble_monitor_pattern_uuid128(p->service_uuid, &patterns[n]);
                if (k < 0)
                        return k;
                patterns[n + 1] = patterns[n];
                patterns[n + 1].ad_type = 0x06; /* incomplete list */
                n += 2;
        }
        snprintf(root, sizeof(root), "/org/blegate/monitor/%s", a->name);
        k = ble_monitor_new(a->ble->bus, a->ble->event, a->path, root, patterns, n, on_monitor, a, &a->monitor);
        if (k < 0)
                a->monitor_refused = true;
        return k;
}

/* A new Adapter1 at path; m is at its a{sv}. */
static int ble_add_adapter(Ble *b, const char *path, sd_bus_message *m, bool recovery) {
        _cleanup_(adapter_freep) BleAdapter *a = NULL;
        const char *name = strrchr(path, '/');
        BleAdapter **list;
        int k;

        if (ble_find_adapter(b, path, NULL) || !name || !ble_wants(b, name + 1))
                return sd_bus_message_skip(m, "a{sv}");

        a = new0(BleAdapter, 1);
        if (!a)
                return -ENOMEM;
        a->ble = b;
        a->retry_usec = BLE_RETRY_MIN_USEC;
        a->path = strdup(path);
        if (!a->path)
                return -ENOMEM;
        a->name = a->path + (name + 1 - path);
        k = adapter_read_properties(m, &a->powered, &a->discovering);
        if (k < 0)
                return k;

        list = reallocarray(b->adapters, b->n_adapters + 1, sizeof(BleAdapter *));
        if (!list)
                return -ENOMEM;
        b->adapters = list;
        b->adapters[b->n_adapters++] = a;

        if (recovery)
                b->stats.recoveries++;
        ble_event(b, recovery ? BLE_ADAPTER_ADDED : BLE_ADAPTER_FOUND, a->name, 0, a->powered ? NULL : "powered off");
        if (!a->powered && b->power_on) {
                ble_event(b, BLE_ADAPTER_POWER_ON, a->name, 0, NULL);
                k = adapter_set_powered(a, true);
                if (k < 0)
                        ble_event(b, BLE_DISCOVERY_FAILED, a->name, k, "cannot send Set(Powered)");
        }
        (void) adapter_start_monitor(a);
        (void) adapter_start_discovery(TAKE_PTR(a));
        ble_update_links(b);
        return 0;
}

static void ble_remove_adapter(Ble *b, const char *path) {
        BleDevice *d;
        BleAdapter *a;
        size_t i;

        a = ble_find_adapter(b, path, &i);
        if (!a)
                return;
        ble_event(b, BLE_ADAPTER_REMOVED, a->name, 0, NULL);
        /* Its device objects went with it, whether or not BlueZ said so one by one. */
        IDMAP_FOREACH(d, b->devices)
                if (d->link && ble_find_parent(b, link_get_path(d->link)) == a)
                        d->present = false;
        memmove(b->adapters + i, b->adapters + i + 1, (b->n_adapters - i - 1) * sizeof(BleAdapter *));
        b->n_adapters--;
        adapter_free(a);
        ble_update_links(b);
}

static void adapter_update(BleAdapter *a, sd_bus_message *m) {
        bool powered = a->powered, discovering = a->discovering;

        if (adapter_read_properties(m, &powered, &discovering) < 0)
                return;

        if (powered != a->powered) {
                a->powered = powered;
                if (!powered) {
                        /* BlueZ has dropped our session and filter: nothing to undo. */
                        a->started = false;
                        a->call = sd_bus_slot_unref(a->call);
                        if (a->retry)
                                (void) sd_event_source_set_enabled(a->retry, SD_EVENT_OFF);
                        ble_event(a->ble, BLE_ADAPTER_POWERED_OFF, a->name, 0, NULL);
                        ble_update_links(a->ble);
                } else {
                        a->ble->stats.recoveries++;
                        a->retry_usec = BLE_RETRY_MIN_USEC;
                        ble_event(a->ble, BLE_ADAPTER_POWERED_ON, a->name, 0, NULL);
                        (void) adapter_start_discovery(a);
                        ble_update_links(a->ble);
                }
        }

        if (discovering != a->discovering) {
                a->discovering = discovering;
                if (!discovering && a->powered && a->started) {
                        a->started = false;
                        a->ble->stats.recoveries++;
                        ble_event(a->ble, BLE_DISCOVERY_STOPPED, a->name, 0, NULL);
                        adapter_schedule(a, BLE_RESTART_USEC);
                }
        }
}

/* "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF[/service000c/char000d]" -> "aabbccddeeff" and
 * "AA:BB:CC:DD:EE:FF". BlueZ builds device paths from the address, so this is the address
 * without a property read, also for the objects below a device. */
static int device_key_from_path(const char *path, char key[static DEVICE_ID_MAX + 1], char address[static 18]) {
        const char *p = strstr(path, "/dev_");

        if (!p || strlen(p + 5) < 17 || (p[22] != '\0' && p[22] != '/'))
                return -EINVAL;
        p += 5;
        memset(key, 0, DEVICE_ID_MAX + 1);
        for (size_t i = 0; i < 6; i++) {
                const char *h = p + 3 * i;

                if (!isxdigit((unsigned char) h[0]) || !isxdigit((unsigned char) h[1]) || (i < 5 && h[2] != '_'))
                        return -EINVAL;
                key[2 * i] = (char) tolower((unsigned char) h[0]);
                key[2 * i + 1] = (char) tolower((unsigned char) h[1]);
                address[3 * i] = (char) toupper((unsigned char) h[0]);
                address[3 * i + 1] = (char) toupper((unsigned char) h[1]);
                address[3 * i + 2] = i < 5 ? ':' : '\0';
        }
        return 0;
}

static void ble_schedule_grant(Ble *b) {
        if (b->grant)
                (void) sd_event_source_set_enabled(b->grant, SD_EVENT_ONESHOT);
}

static void device_info(const BleDevice *d, BleDeviceInfo *ret) {
        *ret = (BleDeviceInfo) {
                .address = d->address,
                .rssi = d->rssi,
                .name = d->name[0] ? d->name : NULL,
                .kind = d->profile->name,
                .connected = d->link && link_get_state(d->link) == LINK_STREAMING,
        };
}

static void on_link_reading(Link *l, const Reading *r, void *userdata) {
        BleDevice *d = userdata;
        BleDeviceInfo info;

        device_info(d, &info);
        if (d->ble->cb.on_reading)
                d->ble->cb.on_reading(r, &info, d->ble->userdata);
}

static void on_link_state(Link *l, LinkState old_state, void *userdata) {
        BleDevice *d = userdata;
        LinkState s = link_get_state(l);

        if (s == LINK_WAITING) {
                d->ticket = ++d->ble->next_ticket;
                d->queued = false;
        }
        /* A slot freed, or a link asking for one. */
        if (s == LINK_WAITING || link_state_holds_slot(old_state))
                ble_schedule_grant(d->ble);
}

static void on_link_event(Link *l, LinkEvent event, int error, const char *message, void *userdata) {
        static const BleEvent map[_LINK_EVENT_MAX] = {
                [LINK_EVENT_STREAMING] = BLE_LINK_STREAMING,
                [LINK_EVENT_LOST] = BLE_LINK_LOST,
                [LINK_EVENT_CONNECT_FAILED] = BLE_LINK_CONNECT_FAILED,
                [LINK_EVENT_SETUP_FAILED] = BLE_LINK_SETUP_FAILED,
                [LINK_EVENT_REFUSED] = BLE_LINK_REFUSED,
                [LINK_EVENT_LATE_CONNECTION] = BLE_LINK_LATE_CONNECTION,
        };
        BleDevice *d = userdata;
        Ble *b = d->ble;
        BleEventInfo e = {
                .event = map[event],
                .object = d->address,
                .error = error,
                .message = message,
                .kind = d->profile->name,
                .device = link_get_device_id(l),
                .retry_usec = IN_SET(event, LINK_EVENT_STREAMING, LINK_EVENT_LATE_CONNECTION) ? 0
                                                                                          : link_get_retry_usec(l),
        };

        if (IN_SET(event, LINK_EVENT_LOST, LINK_EVENT_LATE_CONNECTION))
                b->stats.recoveries++;
        if (b->cb.on_event)
                b->cb.on_event(&e, b->userdata);
}

/* The adapter a GATT device's object lies under, if it is one of ours and powered. */
static BleAdapter *device_adapter(const BleDevice *d) {
        BleAdapter *a;

        if (!d->link || !d->present)
                return NULL;
        a = ble_find_parent(d->ble, link_get_path(d->link));
        return a && a->powered ? a : NULL;
}

/* Whether the link should try: its object is there, on a powered adapter of ours. */
static void device_update_link(BleDevice *d) {
        if (!d->link)
                return;
        if (device_adapter(d))
                link_want(d->link);
        else if (link_get_state(d->link) != LINK_IDLE)
                link_stop(d->link, false);
}

static void ble_update_links(Ble *b) {
        BleDevice *d;

        IDMAP_FOREACH(d, b->devices)
                device_update_link(d);
}

/* Each link newly waiting for a slot of a is reported once, in the order they will get one. */
static void adapter_report_queued(BleAdapter *a) {
        Ble *b = a->ble;

        for (;;) {
                BleDevice *d, *next = NULL;

                IDMAP_FOREACH(d, b->devices)
                        if (d->link && link_get_state(d->link) == LINK_WAITING && !d->queued &&
                            device_adapter(d) == a && (!next || d->ticket < next->ticket))
                                next = d;
                if (!next)
                        return;

                BleEventInfo e = {
                        .event = BLE_LINK_QUEUED,
                        .object = next->address,
                        .kind = next->profile->name,
                        .device = link_get_device_id(next->link),
                        .message = a->name,
                };

                next->queued = true;
                if (b->cb.on_event)
                        b->cb.on_event(&e, b->userdata);
        }
}

/* Hands each adapter's free slots to its waiting links, the longest waiting first. */
static int on_grant(sd_event_source *s, void *userdata) {
        Ble *b = userdata;

        for (size_t i = 0; i < b->n_adapters; i++) {
                BleAdapter *a = b->adapters[i];
                unsigned used = 0;
                BleDevice *d;

                IDMAP_FOREACH(d, b->devices)
                        if (d->link && link_state_holds_slot(link_get_state(d->link)) && device_adapter(d) == a)
                                used++;
                for (;;) {
                        BleDevice *first = NULL;

                        IDMAP_FOREACH(d, b->devices)
                                if (d->link && link_get_state(d->link) == LINK_WAITING && device_adapter(d) == a &&
                                    (!first || d->ticket < first->ticket))
                                        first = d;
                        if (!first)
                                break;
                        if (used >= b->max_connections) {
                                adapter_report_queued(a);
                                break;
                        }
                        used++;
                        link_start(first->link);
                }
        }
        return 0;
}

/* The device at path, created when it is new and of a known profile p that Allow=/Deny= let
 * through; a refused one is kept too, without a profile, so its next advert costs one lookup. */
static BleDevice *ble_get_device(Ble *b, const char *path, const Profile *p) {
        char key[DEVICE_ID_MAX + 1], address[18];
        BleDevice *d;
        int k;

        if (device_key_from_path(path, key, address) < 0)
                return NULL;
        d = idmap_get(b->devices, key);
        if (d || !p)
                return d;
        if (idmap_size(b->devices) >= BLE_DEVICES_MAX) {
                b->stats.untracked++;
                return NULL;
        }
        d = new0(BleDevice, 1);
        if (!d)
                return NULL;
        d->ble = b;
        memcpy(d->key, key, sizeof(d->key));
        memcpy(d->address, address, sizeof(d->address));
        d->rssi = BLE_RSSI_UNKNOWN;
        d->profile = ble_allows(b, address, p) ? p : NULL;
        if (d->profile && d->profile->n_steps > 0) {
                static const LinkCallbacks callbacks = {
                        .on_reading = on_link_reading,
                        .on_state = on_link_state,
                        .on_event = on_link_event,
                };

                k = link_new(b->bus, b->event, d->profile, &b->settings, path, d->key, &callbacks, d, &d->link);
                if (k < 0)
                        return mfree(d);
        }
        if (idmap_put(b->devices, d->key, d) < 0) {
                link_free(d->link);
                return mfree(d);
        }
        return d;
}

static BleDevice *device_free(BleDevice *d) {
        if (!d)
                return NULL;
        link_free(d->link);
        return mfree(d);
}

/* The seq of this advert, or 0 when it repeats the last one heard (dropped). */
static uint64_t device_next_seq(BleDevice *d, const ProfileFrame *f, const uint8_t *data, size_t size,
                                uint64_t now_usec) {
        bool repeat;

        if (f->has_sensor_seq)
                return sequence_next_sensor(&d->seq, f->sensor_seq, now_usec);

        /* No sequence in this format (3): the same bytes again are the same measurement. */
        repeat = d->seq.seq > 0 && size == d->last_size && memcmp(data, d->last_data, size) == 0;
        memcpy(d->last_data, data, size);
        d->last_size = size;
        return repeat ? 0 : sequence_next(&d->seq, now_usec);
}

static void ble_advert(Ble *b, BleDevice *d, const uint8_t *data, size_t size) {
        const ProfileField *mac;
        BleDeviceInfo info;
        ProfileFrame f;
        uint64_t now = 0;
        int k;

        /* Formats without motion data say so in their first byte: skipped before any work. */
        k = profile_ruuvi_decode(data, size, &f);
        if (k == -EOPNOTSUPP) {
                b->stats.skipped++;
                return;
        }
        if (k < 0) {
                b->stats.malformed++;
                return;
        }

        (void) sd_event_now(b->event, CLOCK_REALTIME, &now);
        f.reading.seq = device_next_seq(d, &f, data, size, now);
        if (f.reading.seq == 0) {
                b->stats.duplicates++;
                return;
        }

        /* The tag's own MAC when it sends one: stable even when BlueZ sees another address. */
        mac = profile_frame_get_field(&f, "mac");
        snprintf(f.reading.device, sizeof(f.reading.device), "%s", mac && mac->valid ? mac->text : d->key);
        snprintf(f.reading.type, sizeof(f.reading.type), "%s", profile_ruuvi.name);
        f.reading.time_usec = now;

        b->stats.adverts++;
        device_info(d, &info);
        if (b->cb.on_reading)
                b->cb.on_reading(&f.reading, &info, b->userdata);
}

/* Copies the value of key 0x0499 from an a{qv}; returns its size, 0 when absent. */
static int read_manufacturer_data(sd_bus_message *m, uint8_t buf[static BLE_ADVERT_MAX]) {
        int found = 0, k;

        k = sd_bus_message_enter_container(m, 'a', "{qv}");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_enter_container(m, 'e', "qv")) > 0) {
                uint16_t company;

                k = sd_bus_message_read(m, "q", &company);
                if (k < 0)
                        return k;
                if (company == RUUVI_COMPANY_ID && found == 0) {
                        const void *p;
                        size_t n;

                        k = sd_bus_message_enter_container(m, 'v', "ay");
                        if (k == -ENXIO)
                                k = sd_bus_message_skip(m, "v");
                        else if (k >= 0) {
                                k = sd_bus_message_read_array(m, 'y', &p, &n);
                                if (k < 0)
                                        return k;
                                k = sd_bus_message_exit_container(m);
                                if (n > 0 && n <= BLE_ADVERT_MAX) {
                                        memcpy(buf, p, n);
                                        found = (int) n;
                                }
                        }
                        if (k < 0)
                                return k;
                } else {
                        k = sd_bus_message_skip(m, "v");
                        if (k < 0)
                                return k;
                }
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        return k < 0 ? k : found;
}

/* What ble_device_properties() takes from a Device1 a{sv}. */
typedef struct DeviceProperties {
        uint8_t data[BLE_ADVERT_MAX];
        int size;                 /* of data; 0 without ManufacturerData 0x0499 */
        const char *alias;
        bool have_rssi;
        int16_t rssi;
        const Profile *gatt;      /* a streaming profile whose service it advertises */
        int connected, resolved;  /* -1: not in this message */
} DeviceProperties;

/* The first advertised service UUID that names a profile with GATT steps. */
static int read_uuids(sd_bus_message *m, const Profile **ret) {
        const char *uuid;
        int k;

        k = sd_bus_message_enter_container(m, 'v', "as");
        if (k == -ENXIO)
                return 0;
        if (k >= 0)
                k = sd_bus_message_enter_container(m, 'a', "s");
        while (k >= 0 && (k = sd_bus_message_read_basic(m, 's', &uuid)) > 0) {
                const Profile *p = profile_from_service_uuid(uuid);

                if (p && p->n_steps > 0 && !*ret)
                        *ret = p;
        }
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 1;
}

static int read_variant_flag(sd_bus_message *m, int *ret) {
        int v, k;

        k = read_variant_basic(m, 'b', &v);
        if (k > 0)
                *ret = !!v;
        return k < 0 ? k : 1;
}

static int device_property(sd_bus_message *m, const char *name, void *userdata) {
        DeviceProperties *p = userdata;
        int k;

        if (streq(name, "ManufacturerData")) {
                k = sd_bus_message_enter_container(m, 'v', "a{qv}");
                if (k == -ENXIO) /* not a{qv} (python-dbusmock's default is aa{qv}) */
                        return 0;
                if (k < 0)
                        return k;
                p->size = read_manufacturer_data(m, p->data);
                if (p->size < 0)
                        return p->size;
                k = sd_bus_message_exit_container(m);
                return k < 0 ? k : 1;
        }
        if (streq(name, "Name")) {
                k = read_variant_basic(m, 's', &p->alias);
                return k < 0 ? k : 1;
        }
        if (streq(name, "RSSI")) {
                k = read_variant_basic(m, 'n', &p->rssi);
                p->have_rssi = k > 0;
                return k < 0 ? k : 1;
        }
        if (streq(name, "UUIDs"))
                return read_uuids(m, &p->gatt);
        if (streq(name, "Connected"))
                return read_variant_flag(m, &p->connected);
        if (streq(name, "ServicesResolved"))
                return read_variant_flag(m, &p->resolved);
        return 0;
}

/* Device1 properties at path (an a{sv}, from InterfacesAdded or PropertiesChanged). adverts:
 * whether ManufacturerData and RSSI are news; the cached values in GetManagedObjects are not. */
static int ble_device_properties(Ble *b, const char *path, sd_bus_message *m, bool adverts) {
        DeviceProperties p = { .rssi = BLE_RSSI_UNKNOWN, .connected = -1, .resolved = -1 };
        BleAdapter *a;
        BleDevice *d;
        int k;

        a = ble_find_parent(b, path);
        if (!a)
                return sd_bus_message_skip(m, "a{sv}");

        k = bus_message_foreach_property(m, device_property, &p);
        if (k < 0)
                return k;
        if (adverts && (p.size > 0 || p.have_rssi)) {
                (void) sd_event_now(b->event, CLOCK_MONOTONIC, &a->last_heard_usec);
                a->stalls = 0;
        }

        /* Only devices of a known profile get state: any other device costs nothing more. */
        d = ble_get_device(b, path, p.size > 0 ? &profile_ruuvi : p.gatt);
        if (!d || !d->profile)
                return 0;
        if (p.have_rssi)
                d->rssi = p.rssi;
        /* sd-bus checked it is UTF-8; a name too long to keep whole is not kept at all. */
        if (p.alias && strlen(p.alias) <= BLE_NAME_MAX)
                strcpy(d->name, p.alias);
        /* A device heard by two adapters has an object under each: a link keeps the one it
         * connected through until it lets go of it or the object goes. */
        if (d->link && (streq(link_get_path(d->link), path) || !d->present ||
                        !link_state_holds_slot(link_get_state(d->link)))) {
                /* Any property of it means its object exists, wherever it is now. */
                d->present = true;
                k = link_set_path(d->link, path);
                if (k < 0)
                        return k;
                link_device_changed(d->link, p.connected, p.resolved);
                device_update_link(d);
        }
        if (p.size > 0 && adverts && d->profile == &profile_ruuvi)
                ble_advert(b, d, p.data, (size_t) p.size);
        return 0;
}

typedef struct CharacteristicValue {
        const void *data;
        size_t size;
        bool found;
} CharacteristicValue;

static int characteristic_value(sd_bus_message *m, const char *name, void *userdata) {
        CharacteristicValue *v = userdata;
        int k;

        if (!streq(name, "Value"))
                return 0;
        k = sd_bus_message_enter_container(m, 'v', "ay");
        if (k == -ENXIO)
                return 0;
        if (k >= 0)
                k = sd_bus_message_read_array(m, 'y', &v->data, &v->size);
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        v->found = k >= 0;
        return k < 0 ? k : 1;
}

/* PropertiesChanged on a characteristic: with StartNotify, this is how notifications come.
 * The hot path of GATT streaming: the device by the address in the path, one dictionary walk,
 * then the link's decoder. */
static void ble_characteristic_changed(Ble *b, const char *path, sd_bus_message *m) {
        char key[DEVICE_ID_MAX + 1], address[18];
        CharacteristicValue v = {};
        BleDevice *d;

        if (device_key_from_path(path, key, address) < 0)
                return;
        d = idmap_get(b->devices, key);
        if (!d || !d->link)
                return;
        if (bus_message_foreach_property(m, characteristic_value, &v) < 0 || !v.found)
                return;
        link_value(d->link, path, v.data, v.size);
}

/* One object's a{sa{sv}}. */
static int ble_object_interfaces(Ble *b, const char *path, sd_bus_message *m, bool adverts, bool recovery) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *iface;

                k = sd_bus_message_read(m, "s", &iface);
                if (k < 0)
                        return k;
                if (streq(iface, BLUEZ_ADAPTER))
                        k = ble_add_adapter(b, path, m, recovery);
                else if (streq(iface, BLUEZ_DEVICE))
                        k = ble_device_properties(b, path, m, adverts);
                else
                        k = sd_bus_message_skip(m, "a{sv}");
                if (k < 0)
                        return k;
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;
        return sd_bus_message_exit_container(m);
}

static int ble_enumerate(Ble *b);

static int on_enumerate_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) ble_enumerate(userdata);
        return 0;
}

static void ble_enumerate_failed(Ble *b, int error, const char *message) {
        int k;

        ble_event(b, BLE_ENUMERATE_FAILED, NULL, error, message);
        if (!b->retry)
                k = sd_event_add_time_relative(b->event, &b->retry, CLOCK_MONOTONIC, b->retry_usec, 0,
                                               on_enumerate_retry, b);
        else
                k = sd_event_source_set_time_relative(b->retry, b->retry_usec);
        if (k >= 0)
                (void) sd_event_source_set_enabled(b->retry, SD_EVENT_ONESHOT);
        b->retry_usec = MIN(b->retry_usec * 2, BLE_RETRY_MAX_USEC);
}

static int on_managed_objects(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        Ble *b = userdata;
        int k;

        b->call = sd_bus_slot_unref(b->call);
        b->enumerating = false;
        if (e) {
                char message[256];

                ble_enumerate_failed(b, -sd_bus_message_get_errno(reply),
                                     bus_error_format(NULL, e, message, sizeof(message)));
                return 0;
        }

        k = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (k >= 0 && (k = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                k = sd_bus_message_read(reply, "o", &path);
                if (k >= 0)
                        k = ble_object_interfaces(b, path, reply, false, false);
                if (k >= 0)
                        k = sd_bus_message_exit_container(reply);
        }
        if (k < 0) {
                ble_drop_adapters(b);
                ble_enumerate_failed(b, k, "cannot parse GetManagedObjects");
                return 0;
        }
        b->retry_usec = BLE_RETRY_MIN_USEC;
        return 0;
}

static int ble_enumerate(Ble *b) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int k;

        ble_drop_adapters(b);
        b->call = sd_bus_slot_unref(b->call);
        k = sd_bus_message_new_method_call(b->bus, &m, BLUEZ_NAME, "/", "org.freedesktop.DBus.ObjectManager",
                                           "GetManagedObjects");
        if (k >= 0)
                k = sd_bus_call_async(b->bus, &b->call, m, on_managed_objects, b, BLE_CALL_TIMEOUT_USEC);
        if (k < 0) {
                ble_enumerate_failed(b, k, "cannot send GetManagedObjects");
                return k;
        }
        b->enumerating = true;
        return 0;
}

static void ble_vanished(Ble *b) {
        b->present = false;
        b->enumerating = false;
        b->call = sd_bus_slot_unref(b->call);
        if (b->retry)
                (void) sd_event_source_set_enabled(b->retry, SD_EVENT_OFF);
        ble_drop_adapters(b);
        ble_event(b, BLE_BLUEZ_VANISHED, NULL, 0, NULL);
}

static void ble_appeared(Ble *b) {
        bool returned = b->was_present;

        b->present = b->was_present = true;
        b->retry_usec = BLE_RETRY_MIN_USEC;
        if (returned)
                b->stats.recoveries++;
        ble_event(b, returned ? BLE_BLUEZ_RETURNED : BLE_BLUEZ_APPEARED, NULL, 0, NULL);
        (void) ble_enumerate(b);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *name, *old_owner, *new_owner;
        Ble *b = userdata;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, BLUEZ_NAME))
                return 0;
        if (b->present && (!isempty(old_owner) || isempty(new_owner)))
                ble_vanished(b);
        if (!isempty(new_owner))
                ble_appeared(b);
        return 0;
}

static int on_get_name_owner(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Ble *b = userdata;

        b->call = sd_bus_slot_unref(b->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* NameHasNoOwner: NameOwnerChanged tells us when it comes. */
                if (!b->present)
                        ble_event(b, BLE_BLUEZ_MISSING, NULL, 0, NULL);
                return 0;
        }
        if (!b->present)
                ble_appeared(b);
        return 0;
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Ble *b = userdata;
        const char *path;

        /* While GetManagedObjects is pending its answer will include this object: BlueZ answers
         * in order. */
        if (!b->present || b->enumerating || sd_bus_message_read(m, "o", &path) < 0)
                return 0;
        (void) ble_object_interfaces(b, path, m, true, true);
        return 0;
}

static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *path, *iface;
        Ble *b = userdata;
        int k;

        if (!b->present || b->enumerating || sd_bus_message_read(m, "o", &path) < 0)
                return 0;
        k = sd_bus_message_enter_container(m, 'a', "s");
        while (k >= 0 && sd_bus_message_read(m, "s", &iface) > 0) {
                BleDevice *d;

                if (streq(iface, BLUEZ_ADAPTER))
                        ble_remove_adapter(b, path);
                /* Devices keep their state (by address): they come back with a new object. */
                else if (streq(iface, BLUEZ_DEVICE) && (d = ble_get_device(b, path, NULL)) && d->link &&
                         streq(link_get_path(d->link), path)) {
                        d->present = false;
                        device_update_link(d);
                }
        }
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *path = sd_bus_message_get_path(m), *iface;
        Ble *b = userdata;
        BleAdapter *a;

        if (!b->present || !path || sd_bus_message_read(m, "s", &iface) < 0)
                return 0;
        if (streq(iface, BLUEZ_CHARACTERISTIC))
                ble_characteristic_changed(b, path, m);
        else if (streq(iface, BLUEZ_DEVICE))
                (void) ble_device_properties(b, path, m, true);
        else if (streq(iface, BLUEZ_ADAPTER) && (a = ble_find_adapter(b, path, NULL)))
                adapter_update(a, m);
        return 0;
}

static int split_words(const char *adapters, char ***ret) {
        _cleanup_free_ char *copy = NULL;
        char **list = NULL, *save = NULL;
        size_t n = 0;

        *ret = NULL;
        if (!adapters || adapters[strspn(adapters, " \t")] == '\0')
                return 0;
        copy = strdup(adapters);
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                char **l = reallocarray(list, n + 2, sizeof(char *));

                if (l)
                        list = l;
                if (!l || !(list[n] = strdup(w))) {
                        strv_free_contents(list, n);
                        free(list);
                        return -ENOMEM;
                }
                list[++n] = NULL;
        }
        *ret = list;
        return 0;
}

int ble_new(sd_bus *bus, sd_event *event, const BleConfig *config, const BleCallbacks *cb, void *userdata, Ble **ret) {
        _cleanup_(ble_freep) Ble *b = NULL;
        int k;

        b = new0(Ble, 1);
        if (!b)
                return -ENOMEM;
        b->bus = sd_bus_ref(bus);
        b->event = sd_event_ref(event);
        b->cb = *cb;
        b->userdata = userdata;
        b->retry_usec = BLE_RETRY_MIN_USEC;
        b->max_connections = MAX(config->max_connections, 1U);
        b->power_on = config->power_on;
        b->passive = config->passive;
        b->stall_timeout_usec = config->stall_timeout_usec;
        b->settings = config->settings;
        k = split_words(config->adapters, &b->wanted);
        if (k >= 0)
                k = split_words(config->allow, &b->allow);
        if (k >= 0)
                k = split_words(config->deny, &b->deny);
        if (k >= 0)
                k = idmap_new(&b->devices);
        if (k >= 0)
                k = sd_event_add_defer(b->event, &b->grant, on_grant, b);
        if (k >= 0)
                k = sd_event_source_set_enabled(b->grant, SD_EVENT_OFF);
        if (k < 0)
                return k;

        /* The matches first, then the questions: see the top of this file. */
        k = sd_bus_add_match_async(bus, &b->match_owner,
                                   "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                   "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" BLUEZ_NAME "'",
                                   on_name_owner_changed, NULL, b);
        if (k >= 0)
                k = sd_bus_match_signal_async(bus, &b->match_added, BLUEZ_NAME, "/", "org.freedesktop.DBus.ObjectManager",
                                              "InterfacesAdded", on_interfaces_added, NULL, b);
        if (k >= 0)
                k = sd_bus_match_signal_async(bus, &b->match_removed, BLUEZ_NAME, "/",
                                              "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved",
                                              on_interfaces_removed, NULL, b);
        if (k >= 0)
                k = sd_bus_match_signal_async(bus, &b->match_changed, BLUEZ_NAME, NULL, "org.freedesktop.DBus.Properties",
                                              "PropertiesChanged", on_properties_changed, NULL, b);
        if (k >= 0)
                k = sd_bus_call_method_async(bus, &b->call, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "GetNameOwner", on_get_name_owner, b, "s",
                                             BLUEZ_NAME);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(b);
        return 0;
}

Ble *ble_free(Ble *b) {
        BleDevice *d;

        if (!b)
                return NULL;
        /* The links first, while they can still tell BlueZ to let their devices go. */
        if (b->devices)
                IDMAP_FOREACH(d, b->devices)
                        device_free(d);
        idmap_free(b->devices);
        b->devices = NULL;
        ble_drop_adapters(b);
        sd_bus_slot_unref(b->call);
        sd_bus_slot_unref(b->match_owner);
        sd_bus_slot_unref(b->match_added);
        sd_bus_slot_unref(b->match_removed);
        sd_bus_slot_unref(b->match_changed);
        sd_event_source_disable_unref(b->retry);
        sd_event_source_disable_unref(b->grant);
        strv_free(b->wanted);
        strv_free(b->allow);
        strv_free(b->deny);
        sd_event_unref(b->event);
        sd_bus_unref(b->bus);
        return mfree(b);
}

void ble_get_stats(const Ble *b, BleStats *ret) {
        BleDevice *d;

        *ret = b->stats;
        IDMAP_FOREACH(d, b->devices)
                if (d->link) {
                        LinkStats ls;

                        link_get_stats(d->link, &ls);
                        ret->notifications += ls.notifications;
                        ret->notify_malformed += ls.malformed;
                        ret->links += link_get_state(d->link) == LINK_STREAMING;
                }
}
