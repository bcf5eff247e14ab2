/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A GATT link to one device: the state machine that connects it through BlueZ, walks its
 * profile's setup steps (identify, check, write the configuration, subscribe) and turns every
 * notification into readings, and that starts again, later each time, when anything fails or
 * the link drops. The BlueZ client (ble.c) owns the links: it tells a link what BlueZ says of
 * its device (present, Connected, ServicesResolved, characteristic values), decides when it may
 * connect (at most MaxConnections= per adapter: a link waits in LINK_WAITING until granted), and
 * passes on what the link reports.
 *
 *   IDLE --want--> WAITING --start--> CONNECTING --> RESOLVING --> SETUP --> STREAMING
 *                     ^                    |              |           |          |
 *                     +---- BACKOFF <------+--------------+-----------+----------+ (failure, loss)
 *
 * Every call to BlueZ has a timeout; a failure never retries sooner than the backoff, which
 * doubles up to LINK_RETRY_MAX_USEC and is jittered so that devices lost together (an adapter
 * reset) do not come back in lockstep. The one exception is BlueZ's "abort-by-local" and
 * "canceled" Connect errors, which RF interference makes common and which usually succeed at
 * once: they are retried once after a short pause. A device that is not what its advert
 * claimed (a check or identity the profile refuses, a missing characteristic) is retried only
 * after LINK_REFUSED_USEC. A Connect that timed out may still complete in BlueZ: when it does
 * while the link holds no slot, the link disconnects it, so that MaxConnections= counts every
 * radio link the daemon made; while the link is connecting again, it takes the connection as
 * its own.
 *
 * Notifications come either as PropertiesChanged(Value) on the characteristic (StartNotify),
 * which ble.c routes here, or, where BlueZ offers AcquireNotify, from a socket read on the event
 * loop, which skips the bus entirely. Library-like: nothing here logs.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "profile.h"
#include "reading.h"

#define LINK_CALL_TIMEOUT_USEC (UINT64_C(10) * 1000 * 1000)
/* Above the kernel's 20 s LE connection attempt, so its own error comes first. */
#define LINK_CONNECT_TIMEOUT_USEC (UINT64_C(30) * 1000 * 1000)
#define LINK_RETRY_MIN_USEC (UINT64_C(1) * 1000 * 1000)
#define LINK_RETRY_MAX_USEC (UINT64_C(60) * 1000 * 1000)
#define LINK_ABORT_RETRY_USEC (UINT64_C(500) * 1000)
#define LINK_REFUSED_USEC (UINT64_C(600) * 1000 * 1000)

typedef struct Link Link;

typedef enum LinkState {
        LINK_IDLE,       /* nothing to do: the device or its adapter is gone */
        LINK_WAITING,    /* wants a connection slot on its adapter */
        LINK_CONNECTING, /* Connect() sent */
        LINK_RESOLVING,  /* connected, waiting for ServicesResolved */
        LINK_SETUP,      /* finding the characteristics, then the profile's steps */
        LINK_STREAMING,
        LINK_BACKOFF,    /* waiting to try again */
        _LINK_STATE_MAX,
} LinkState;

typedef enum LinkEvent {
        LINK_EVENT_STREAMING,      /* set up: readings flow */
        LINK_EVENT_LOST,           /* the link went down after connecting */
        LINK_EVENT_CONNECT_FAILED, /* Connect() failed or timed out */
        LINK_EVENT_SETUP_FAILED,   /* a setup step failed */
        LINK_EVENT_REFUSED,        /* the device is not usable as its profile says */
        LINK_EVENT_LATE_CONNECTION, /* a Connect that timed out completed later: disconnected */
        _LINK_EVENT_MAX,
} LinkEvent;

typedef struct LinkCallbacks {
        /* A reading, complete with device id, type, seq and time. */
        void (*on_reading)(Link *l, const Reading *r, void *userdata);
        /* The state changed; the link must not be freed from here. */
        void (*on_state)(Link *l, LinkState old_state, void *userdata);
        /* What happened, for the caller to log. error: negative errno or 0; message: BlueZ's error
         * name and text, or what failed. Then link_get_retry_usec() says when it tries again. */
        void (*on_event)(Link *l, LinkEvent event, int error, const char *message, void *userdata);
} LinkCallbacks;

typedef struct LinkStats {
        uint64_t notifications;    /* values decoded */
        uint64_t readings;
        uint64_t duplicates;       /* samples whose sensor sequence repeated the last one */
        uint64_t malformed;        /* values the decoder refused */
        uint64_t connects;         /* links set up */
        uint64_t losses;
} LinkStats;

/* path: the Device1 object; key: the device id when the profile does not name one (the address
 * without colons). bus must be driven by event. The link starts in LINK_IDLE. */
int link_new(sd_bus *bus, sd_event *event, const Profile *profile, const ProfileSettings *settings, const char *path,
             const char *key, const LinkCallbacks *cb, void *userdata, Link **ret);
/* Stops the link first (see link_stop(), disconnecting). */
Link *link_free(Link *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(Link *, link_free);

/* The device is there (again): from LINK_IDLE, ask for a slot. */
void link_want(Link *l);
/* The slot is granted: connect, or use the connection someone else made. LINK_WAITING only. */
void link_start(Link *l);
/* Back to LINK_IDLE: calls cancelled, sockets closed. disconnect: also ask BlueZ to disconnect
 * the device, if this link connected it (the daemon stopping; BlueZ keeps a link open when its
 * client leaves). Without: the device, its adapter or BlueZ are gone anyway. */
void link_stop(Link *l, bool disconnect);

/* The device object moved (another adapter). Stops the link when the path differs. */
int link_set_path(Link *l, const char *path);
/* What BlueZ says of the device: 1 or 0, or -1 when not said in this message. */
void link_device_changed(Link *l, int connected, int services_resolved);
/* A characteristic's value changed (PropertiesChanged): a notification when it is one this
 * link subscribed to, else ignored (such as the echo of our own ReadValue). */
void link_value(Link *l, const char *path, const uint8_t *data, size_t size);

LinkState link_get_state(const Link *l);
const char *link_state_to_string(LinkState s);
/* True in the states that hold one of the adapter's connection slots. */
bool link_state_holds_slot(LinkState s);
const Profile *link_get_profile(const Link *l);
const char *link_get_path(const Link *l);
/* The id readings carry: the profile's identity once read, else the key. */
const char *link_get_device_id(const Link *l);
/* When a link in LINK_BACKOFF tries again, from now. */
uint64_t link_get_retry_usec(const Link *l);
void link_get_stats(const Link *l, LinkStats *ret);
