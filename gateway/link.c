/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The GATT link state machine (see link.h). At most one BlueZ call is pending per link (its
 * slot in `call`), and one timer serves the backoff and the wait for ServicesResolved, so that
 * leaving any state is: cancel the call, disarm the timer, close the sockets.
 *
 * The characteristics are found once per connection with one GetManagedObjects, rather than
 * by following every GATT object BlueZ announces: BlueZ re-creates them across reconnections
 * and the links are few, so a snapshot taken when ServicesResolved turns true is both simpler
 * and always current.
 */

#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "bus-properties.h"
#include "link.h"
#include "sequence.h"

#define BLUEZ_NAME "org.bluez"
#define BLUEZ_DEVICE "org.bluez.Device1"
#define BLUEZ_CHARACTERISTIC "org.bluez.GattCharacteristic1"

/* A phone's clock further off than this is not believed: the receipt time is used instead. */
#define LINK_CLOCK_SKEW_MAX_USEC (UINT64_C(600) * 1000 * 1000)
/* Notifications read from an acquired socket per wakeup, so one chatty device cannot starve
 * the loop. */
#define LINK_READS_PER_WAKEUP 64
#define LINK_STEPS_MAX 8

typedef struct LinkStep {
        char *path;              /* the characteristic; NULL until found */
        bool acquirable;         /* it has NotifyAcquired: AcquireNotify is offered */
        bool subscribed;         /* PropertiesChanged(Value) on path are notifications */
        int fd;                  /* the acquired socket, or -1 */
        sd_event_source *io;
} LinkStep;

struct Link {
        sd_bus *bus;
        sd_event *event;
        const Profile *profile;
        ProfileSettings settings;
        LinkCallbacks cb;
        void *userdata;

        char *path;
        char key[DEVICE_ID_MAX + 1];
        char id[DEVICE_ID_MAX + 1];

        LinkState state;
        bool connected, resolved;        /* as BlueZ last said */
        bool we_connected;               /* our Connect() made this connection */
        bool abort_retried;              /* the one quick retry after abort-by-local is spent */
        bool connect_unanswered;         /* our Connect timed out: BlueZ may still complete it */
        sd_bus_slot *call;
        sd_event_source *timer;
        uint64_t backoff_usec;           /* the next failure's delay, before jitter */
        uint64_t retry_usec;             /* the delay chosen for the current backoff */
        uint64_t jitter;                 /* xorshift state */
        size_t step;
        LinkStep steps[LINK_STEPS_MAX];

        Sequence seq;
        LinkStats stats;
};

static const char *const link_state_table[_LINK_STATE_MAX] = {
        [LINK_IDLE] = "idle",
        [LINK_WAITING] = "waiting",
        [LINK_CONNECTING] = "connecting",
        [LINK_RESOLVING] = "resolving",
        [LINK_SETUP] = "setup",
        [LINK_STREAMING] = "streaming",
        [LINK_BACKOFF] = "backoff",
};

const char *link_state_to_string(LinkState s) {
        return s >= 0 && s < _LINK_STATE_MAX ? link_state_table[s] : NULL;
}

bool link_state_holds_slot(LinkState s) {
        return IN_SET(s, LINK_CONNECTING, LINK_RESOLVING, LINK_SETUP, LINK_STREAMING);
}

static void link_set_state(Link *l, LinkState s) {
        LinkState old = l->state;

        if (old == s)
                return;
        l->state = s;
        if (l->cb.on_state)
                l->cb.on_state(l, old, l->userdata);
}

static void link_event(Link *l, LinkEvent event, int error, const char *message) {
        if (l->cb.on_event)
                l->cb.on_event(l, event, error, message, l->userdata);
}

/* Leaves whatever the link was doing: no call pending, no timer, no socket, nothing subscribed. */
static void link_reset(Link *l) {
        l->call = sd_bus_slot_unref(l->call);
        if (l->timer)
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        for (size_t i = 0; i < l->profile->n_steps; i++) {
                LinkStep *s = &l->steps[i];

                s->io = sd_event_source_disable_unref(s->io);
                if (s->fd >= 0)
                        (void) close(s->fd);
                s->fd = -1;
                s->subscribed = false;
                s->acquirable = false;
                s->path = mfree(s->path);
        }
}

static void link_fail(Link *l, LinkEvent event, int error, const char *message, uint64_t delay);

/* The one timer: the end of a backoff, or of the wait for ServicesResolved. */
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Link *l = userdata;

        if (l->state == LINK_BACKOFF)
                link_set_state(l, LINK_WAITING);
        else if (l->state == LINK_RESOLVING)
                link_fail(l, LINK_EVENT_SETUP_FAILED, -ETIMEDOUT, "services not resolved in time", 0);
        return 0;
}

static int link_arm_timer(Link *l, uint64_t delay) {
        int k;

        if (!l->timer)
                k = sd_event_add_time_relative(l->event, &l->timer, CLOCK_MONOTONIC, delay, 0, on_timer, l);
        else
                k = sd_event_source_set_time_relative(l->timer, delay);
        if (k >= 0)
                k = sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        return k;
}

/* Fire and forget: the reply does not matter, only that the radio link is given back. */
static void link_disconnect(Link *l) {
        if (l->connected && l->we_connected)
                (void) sd_bus_call_method_async(l->bus, NULL, BLUEZ_NAME, l->path, BLUEZ_DEVICE, "Disconnect", NULL,
                                                NULL, NULL);
        l->we_connected = false;
}

/* ±25%, so links that failed together spread out. */
static uint64_t link_jittered(Link *l, uint64_t delay) {
        l->jitter ^= l->jitter << 13;
        l->jitter ^= l->jitter >> 7;
        l->jitter ^= l->jitter << 17;
        return delay - delay / 4 + l->jitter % (delay / 2 + 1);
}

/* Gives up on the current attempt: reports it, lets the device go, and waits. delay 0: the
 * next step of the doubling backoff. */
static void link_fail(Link *l, LinkEvent event, int error, const char *message, uint64_t delay) {
        link_reset(l);
        if (event != LINK_EVENT_CONNECT_FAILED)
                link_disconnect(l);
        if (delay == 0) {
                delay = l->backoff_usec;
                l->backoff_usec = MIN(l->backoff_usec * 2, LINK_RETRY_MAX_USEC);
        }
        l->retry_usec = link_jittered(l, delay);
        link_event(l, event, error, message);
        if (link_arm_timer(l, l->retry_usec) < 0) {
                /* Without a timer the link would never come back: try again at once instead. */
                link_set_state(l, LINK_WAITING);
                return;
        }
        link_set_state(l, LINK_BACKOFF);
}

static void link_fail_call(Link *l, LinkEvent event, const char *what, sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        char message[256];

        link_fail(l, event, -sd_bus_message_get_errno(reply), bus_error_format(what, e, message, sizeof(message)), 0);
}

/* The link came down under us. A link that streamed tries again after the shortest delay,
 * leaving its backoff as it is; one lost before it streamed is a failure like any other, each
 * waiting longer. When only the services went away, the radio link is still up and ours:
 * link_fail() gives it back, so that it does not hold a connection slot nobody counts. */
static void link_lost(Link *l, const char *why) {
        l->stats.losses++;
        link_fail(l, LINK_EVENT_LOST, 0, why, l->state == LINK_STREAMING ? LINK_RETRY_MIN_USEC : 0);
}

static void link_refuse(Link *l, int error, const char *message) {
        link_fail(l, LINK_EVENT_REFUSED, error, message, LINK_REFUSED_USEC);
}

static void link_run_step(Link *l);

/* A call without arguments, its reply to handler, pending in l->call. */
static int link_call(Link *l, const char *path, const char *iface, const char *member,
                     sd_bus_message_handler_t handler, uint64_t timeout) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int k;

        k = sd_bus_message_new_method_call(l->bus, &m, BLUEZ_NAME, path, iface, member);
        if (k < 0)
                return k;
        return sd_bus_call_async(l->bus, &l->call, m, handler, l, timeout);
}

static void link_next_step(Link *l) {
        l->step++;
        link_run_step(l);
}

static uint64_t link_now(Link *l) {
        uint64_t now = 0;

        (void) sd_event_now(l->event, CLOCK_REALTIME, &now);
        return now;
}

static void link_deliver(Link *l, const ProfileDecoder *d, const uint8_t *data, size_t size) {
        ProfileFrame frames[PROFILE_FRAMES_MAX];
        uint64_t now = link_now(l);
        int n;

        n = profile_decode(d, &l->settings, data, size, frames, ELEMENTSOF(frames));
        if (n < 0) {
                if (n != -EOPNOTSUPP)
                        l->stats.malformed++;
                return;
        }
        l->stats.notifications++;
        for (int i = 0; i < n; i++) {
                Reading *r = &frames[i].reading;

                r->seq = frames[i].has_sensor_seq ? sequence_next_sensor(&l->seq, frames[i].sensor_seq, now)
                                                  : sequence_next(&l->seq, now);
                if (r->seq == 0) {
                        l->stats.duplicates++;
                        continue;
                }
                r->time_usec = now;
                if (frames[i].has_sensor_time && frames[i].sensor_time_usec + LINK_CLOCK_SKEW_MAX_USEC > now &&
                    frames[i].sensor_time_usec < now + LINK_CLOCK_SKEW_MAX_USEC)
                        r->time_usec = frames[i].sensor_time_usec;
                memcpy(r->device, l->id, sizeof(r->device));
                snprintf(r->type, sizeof(r->type), "%s", l->profile->name);
                l->stats.readings++;
                if (l->cb.on_reading)
                        l->cb.on_reading(l, r, l->userdata);
        }
}

static int on_notify_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Link *l = userdata;
        uint8_t buf[PROFILE_VALUE_MAX];
        size_t i;

        for (i = 0; i < l->profile->n_steps; i++)
                if (l->steps[i].io == s)
                        break;
        if (i == l->profile->n_steps)
                return 0;

        for (unsigned n = 0; n < LINK_READS_PER_WAKEUP; n++) {
                ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                if (k <= 0) {
                        /* BlueZ closes the socket when the link drops (or it lets go of it). */
                        link_lost(l, "the notification socket closed");
                        return 0;
                }
                link_deliver(l, l->profile->steps[i].decoder, buf, (size_t) k);
        }
        if ((revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLIN))
                link_lost(l, "the notification socket closed");
        return 0;
}

static int read_value_reply(sd_bus_message *reply, const void **ret, size_t *ret_size) {
        return sd_bus_message_read_array(reply, 'y', ret, ret_size);
}

static int on_read_value(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const ProfileStep *step;
        Link *l = userdata;
        char message[128];
        const void *data;
        size_t size;
        int k;

        l->call = sd_bus_slot_unref(l->call);
        step = &l->profile->steps[l->step];
        if (sd_bus_message_is_method_error(reply, NULL)) {
                link_fail_call(l, LINK_EVENT_SETUP_FAILED, "ReadValue", reply);
                return 0;
        }
        k = read_value_reply(reply, &data, &size);
        if (k < 0) {
                link_fail(l, LINK_EVENT_SETUP_FAILED, k, "ReadValue: unexpected reply", 0);
                return 0;
        }
        if (step->type == PROFILE_STEP_IDENTIFY) {
                char id[DEVICE_ID_MAX + 1];

                k = step->identify(data, size, id);
                if (k < 0) {
                        snprintf(message, sizeof(message), "its identity (%s) is not a valid device id", step->uuid);
                        link_refuse(l, k, message);
                        return 0;
                }
                memcpy(l->id, id, sizeof(l->id));
        } else {
                k = step->check(data, size);
                if (k < 0) {
                        snprintf(message, sizeof(message), "%s refused by the %s profile", step->uuid,
                                 l->profile->name);
                        link_refuse(l, k, message);
                        return 0;
                }
        }
        link_next_step(l);
        return 0;
}

static int on_write_value(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Link *l = userdata;

        l->call = sd_bus_slot_unref(l->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                link_fail_call(l, LINK_EVENT_SETUP_FAILED, "WriteValue", reply);
                return 0;
        }
        link_next_step(l);
        return 0;
}

static int on_start_notify(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Link *l = userdata;

        l->call = sd_bus_slot_unref(l->call);
        /* InProgress: our session on it exists already (one per client), which is what we want. */
        if (sd_bus_message_is_method_error(reply, NULL) &&
            !sd_bus_message_is_method_error(reply, "org.bluez.Error.InProgress")) {
                link_fail_call(l, LINK_EVENT_SETUP_FAILED, "StartNotify", reply);
                return 0;
        }
        link_next_step(l);
        return 0;
}

static int link_start_notify(Link *l) {
        LinkStep *s = &l->steps[l->step];

        /* Values may come before the reply. */
        s->subscribed = true;
        return link_call(l, s->path, BLUEZ_CHARACTERISTIC, "StartNotify", on_start_notify, LINK_CALL_TIMEOUT_USEC);
}

static int on_acquire_notify(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Link *l = userdata;
        LinkStep *s = &l->steps[l->step];
        uint16_t mtu;
        int fd, k;

        l->call = sd_bus_slot_unref(l->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* Some devices, and BlueZ while another client notifies, refuse: the bus path
                 * works everywhere. */
                k = link_start_notify(l);
                if (k < 0)
                        link_fail(l, LINK_EVENT_SETUP_FAILED, k, "cannot send StartNotify", 0);
                return 0;
        }
        k = sd_bus_message_read(reply, "hq", &fd, &mtu);
        if (k >= 0) {
                /* The message owns its descriptor. */
                s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                k = s->fd < 0 ? -errno : 0;
        }
        if (k >= 0)
                k = sd_event_add_io(l->event, &s->io, s->fd, EPOLLIN, on_notify_io, l);
        if (k < 0) {
                link_fail(l, LINK_EVENT_SETUP_FAILED, k, "AcquireNotify: cannot use the socket", 0);
                return 0;
        }
        link_next_step(l);
        return 0;
}

/* Runs step l->step of the profile, or, past the last, starts streaming. */
static void link_run_step(Link *l) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const ProfileStep *step;
        LinkStep *s;
        int k = 0;

        if (l->step >= l->profile->n_steps) {
                l->backoff_usec = LINK_RETRY_MIN_USEC;
                l->abort_retried = false;
                l->stats.connects++;
                link_set_state(l, LINK_STREAMING);
                link_event(l, LINK_EVENT_STREAMING, 0, NULL);
                return;
        }
        step = &l->profile->steps[l->step];
        s = &l->steps[l->step];

        switch (step->type) {
        case PROFILE_STEP_IDENTIFY:
        case PROFILE_STEP_CHECK:
                k = sd_bus_message_new_method_call(l->bus, &m, BLUEZ_NAME, s->path, BLUEZ_CHARACTERISTIC, "ReadValue");
                if (k >= 0)
                        k = sd_bus_message_append(m, "a{sv}", 0);
                if (k >= 0)
                        k = sd_bus_call_async(l->bus, &l->call, m, on_read_value, l, LINK_CALL_TIMEOUT_USEC);
                break;
        case PROFILE_STEP_WRITE: {
                uint8_t buf[PROFILE_WRITE_MAX];
                int n = step->build(&l->settings, buf);

                if (n < 0) {
                        link_fail(l, LINK_EVENT_SETUP_FAILED, n, "the settings cannot be written", LINK_REFUSED_USEC);
                        return;
                }
                k = sd_bus_message_new_method_call(l->bus, &m, BLUEZ_NAME, s->path, BLUEZ_CHARACTERISTIC,
                                                   "WriteValue");
                if (k >= 0)
                        k = sd_bus_message_append_array(m, 'y', buf, (size_t) n);
                if (k >= 0)
                        k = sd_bus_message_append(m, "a{sv}", 1, "type", "s", "request");
                if (k >= 0)
                        k = sd_bus_call_async(l->bus, &l->call, m, on_write_value, l, LINK_CALL_TIMEOUT_USEC);
                break;
        }
        case PROFILE_STEP_NOTIFY:
                if (!s->acquirable) {
                        k = link_start_notify(l);
                        break;
                }
                k = sd_bus_message_new_method_call(l->bus, &m, BLUEZ_NAME, s->path, BLUEZ_CHARACTERISTIC,
                                                   "AcquireNotify");
                if (k >= 0)
                        k = sd_bus_message_append(m, "a{sv}", 0);
                if (k >= 0)
                        k = sd_bus_call_async(l->bus, &l->call, m, on_acquire_notify, l, LINK_CALL_TIMEOUT_USEC);
                break;
        default:
                k = -EINVAL;
        }
        if (k < 0)
                link_fail(l, LINK_EVENT_SETUP_FAILED, k, "cannot send a GATT call", 0);
}

typedef struct CharacteristicProperties {
        const char *uuid;
        bool acquirable;
} CharacteristicProperties;

static int characteristic_property(sd_bus_message *m, const char *name, void *userdata) {
        CharacteristicProperties *p = userdata;
        int k;

        if (streq(name, "NotifyAcquired")) {
                p->acquirable = true;
                return 0;
        }
        if (!streq(name, "UUID"))
                return 0;
        k = sd_bus_message_enter_container(m, 'v', "s");
        if (k == -ENXIO)
                return 0;
        if (k >= 0)
                k = sd_bus_message_read(m, "s", &p->uuid);
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        return k < 0 ? k : 1;
}

/* One object of GetManagedObjects: a characteristic of our device's? Then note its path. */
static int link_object(Link *l, const char *path, sd_bus_message *m) {
        size_t n = strlen(l->path);
        bool ours = strncmp(path, l->path, n) == 0 && path[n] == '/';
        int k;

        if (!ours)
                return sd_bus_message_skip(m, "a{sa{sv}}");
        k = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        while (k >= 0 && (k = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                CharacteristicProperties p = {};
                const char *iface;

                k = sd_bus_message_read(m, "s", &iface);
                if (k < 0)
                        break;
                if (!streq(iface, BLUEZ_CHARACTERISTIC))
                        k = sd_bus_message_skip(m, "a{sv}");
                else
                        k = bus_message_foreach_property(m, characteristic_property, &p);
                if (k < 0)
                        break;
                for (size_t i = 0; p.uuid && i < l->profile->n_steps; i++)
                        if (!l->steps[i].path && strcasecmp(l->profile->steps[i].uuid, p.uuid) == 0) {
                                l->steps[i].path = strdup(path);
                                if (!l->steps[i].path)
                                        return -ENOMEM;
                                l->steps[i].acquirable = p.acquirable;
                        }
                k = sd_bus_message_exit_container(m);
        }
        if (k < 0)
                return k;
        return sd_bus_message_exit_container(m);
}

static int on_managed_objects(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Link *l = userdata;
        int k;

        l->call = sd_bus_slot_unref(l->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                link_fail_call(l, LINK_EVENT_SETUP_FAILED, "GetManagedObjects", reply);
                return 0;
        }
        k = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (k >= 0 && (k = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                k = sd_bus_message_read(reply, "o", &path);
                if (k >= 0)
                        k = link_object(l, path, reply);
                if (k >= 0)
                        k = sd_bus_message_exit_container(reply);
        }
        if (k < 0) {
                link_fail(l, LINK_EVENT_SETUP_FAILED, k, "cannot parse GetManagedObjects", 0);
                return 0;
        }
        for (size_t i = 0; i < l->profile->n_steps; i++)
                if (!l->steps[i].path) {
                        char message[128];

                        snprintf(message, sizeof(message), "it has no characteristic %s", l->profile->steps[i].uuid);
                        link_refuse(l, -ENOENT, message);
                        return 0;
                }
        l->step = 0;
        link_run_step(l);
        return 0;
}

/* Services resolved: find the characteristics, then walk the steps. Everything is done again
 * after every connection, since a sensor forgets its configuration when the link drops. */
static void link_setup(Link *l) {
        int k;

        link_reset(l);
        link_set_state(l, LINK_SETUP);
        k = link_call(l, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", on_managed_objects,
                      LINK_CALL_TIMEOUT_USEC);
        if (k < 0)
                link_fail(l, LINK_EVENT_SETUP_FAILED, k, "cannot send GetManagedObjects", 0);
}

/* Connected (by us or someone else): services next, or at once if BlueZ has them. */
static void link_connected(Link *l) {
        if (l->resolved) {
                link_setup(l);
                return;
        }
        if (link_arm_timer(l, LINK_CONNECT_TIMEOUT_USEC) < 0) {
                link_fail(l, LINK_EVENT_SETUP_FAILED, -ENOMEM, "cannot arm a timer", 0);
                return;
        }
        link_set_state(l, LINK_RESOLVING);
}

static int on_connect(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        Link *l = userdata;

        l->call = sd_bus_slot_unref(l->call);
        if (!e) {
                l->connect_unanswered = false;
                l->we_connected = true;
                l->connected = true;
                link_connected(l);
                return 0;
        }
        /* Connected already, or being connected by another client: either way it will resolve.
         * After our own Connect timed out, that other client is most likely that Connect. */
        if (sd_bus_error_has_names(e, "org.bluez.Error.AlreadyConnected", "org.bluez.Error.InProgress")) {
                if (l->connect_unanswered)
                        l->we_connected = true;
                l->connect_unanswered = false;
                link_connected(l);
                return 0;
        }
        /* Interference: the controller gave up on a link that was being made. A second try
         * usually works, so it comes soon, once. */
        if (!l->abort_retried && sd_bus_error_has_name(e, "org.bluez.Error.Failed") && e->message &&
            (strstr(e->message, "abort-by-local") || strstr(e->message, "canceled") ||
             strstr(e->message, "Software caused connection abort"))) {
                char message[256];

                l->abort_retried = true;
                link_fail(l, LINK_EVENT_CONNECT_FAILED, -sd_bus_message_get_errno(reply),
                          bus_error_format("Connect", e, message, sizeof(message)), LINK_ABORT_RETRY_USEC);
                return 0;
        }
        /* No answer in time, which is no answer at all: BlueZ goes on connecting. */
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                l->connect_unanswered = true;
        link_fail_call(l, LINK_EVENT_CONNECT_FAILED, "Connect", reply);
        return 0;
}

void link_start(Link *l) {
        int k;

        if (l->state != LINK_WAITING)
                return;
        if (l->connected) {
                /* Someone (a previous run of ours, another client) holds the link: use it. */
                link_connected(l);
                return;
        }
        k = link_call(l, l->path, BLUEZ_DEVICE, "Connect", on_connect, LINK_CONNECT_TIMEOUT_USEC);
        if (k < 0) {
                link_fail(l, LINK_EVENT_CONNECT_FAILED, k, "cannot send Connect", 0);
                return;
        }
        link_set_state(l, LINK_CONNECTING);
}

void link_device_changed(Link *l, int connected, int services_resolved) {
        if (connected >= 0)
                l->connected = connected;
        if (services_resolved >= 0)
                l->resolved = services_resolved;

        /* The Connect that timed out did go through after all. The connection is ours, and
         * while the link waits without a slot nobody counts it: it is given back. */
        if (connected >= 0 && l->connect_unanswered) {
                l->connect_unanswered = false;
                if (connected) {
                        l->we_connected = true;
                        if (!link_state_holds_slot(l->state)) {
                                link_disconnect(l);
                                link_event(l, LINK_EVENT_LATE_CONNECTION, 0, NULL);
                                return;
                        }
                }
        }

        switch (l->state) {
        case LINK_RESOLVING:
                /* Only a Connected=false counts: after InProgress the link waits here for
                 * another client's connection, which has not said Connected=true yet. */
                if (connected == 0)
                        link_lost(l, "disconnected before its services were resolved");
                else if (l->resolved)
                        link_setup(l);
                break;
        case LINK_SETUP:
        case LINK_STREAMING:
                if (!l->connected)
                        link_lost(l, "disconnected");
                else if (!l->resolved)
                        link_lost(l, "its services went away");
                break;
        default:
                /* CONNECTING: the reply decides (abort-by-local flips Connected before it). */
                break;
        }
}

void link_value(Link *l, const char *path, const uint8_t *data, size_t size) {
        if (!IN_SET(l->state, LINK_SETUP, LINK_STREAMING))
                return;
        for (size_t i = 0; i < l->profile->n_steps; i++)
                if (l->steps[i].subscribed && streq(l->steps[i].path, path)) {
                        link_deliver(l, l->profile->steps[i].decoder, data, size);
                        return;
                }
}

void link_want(Link *l) {
        if (l->state == LINK_IDLE)
                link_set_state(l, LINK_WAITING);
}

void link_stop(Link *l, bool disconnect) {
        link_reset(l);
        if (disconnect)
                link_disconnect(l);
        l->we_connected = false;
        l->connect_unanswered = false;
        /* Stale once the device, its adapter or BlueZ are gone: the object, when it is back,
         * says how things are. */
        l->connected = l->resolved = false;
        link_set_state(l, LINK_IDLE);
}

int link_set_path(Link *l, const char *path) {
        char *p;

        if (streq(l->path, path))
                return 0;
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        link_stop(l, false);
        free(l->path);
        l->path = p;
        l->connected = l->resolved = false;
        return 0;
}

int link_new(sd_bus *bus, sd_event *event, const Profile *profile, const ProfileSettings *settings, const char *path,
             const char *key, const LinkCallbacks *cb, void *userdata, Link **ret) {
        _cleanup_(link_freep) Link *l = NULL;

        if (!profile || profile->n_steps > LINK_STEPS_MAX || !device_id_is_valid(key, strlen(key)) || !event)
                return -EINVAL;
        l = new0(Link, 1);
        if (!l)
                return -ENOMEM;
        l->profile = profile;
        for (size_t i = 0; i < LINK_STEPS_MAX; i++)
                l->steps[i].fd = -1;
        l->bus = sd_bus_ref(bus);
        l->event = sd_event_ref(event);
        l->settings = settings ? *settings : PROFILE_SETTINGS_DEFAULTS;
        l->cb = *cb;
        l->userdata = userdata;
        l->path = strdup(path);
        if (!l->path)
                return -ENOMEM;
        snprintf(l->key, sizeof(l->key), "%s", key);
        memcpy(l->id, l->key, sizeof(l->id));
        l->backoff_usec = LINK_RETRY_MIN_USEC;
        /* Any non-zero seed; the address makes devices differ. */
        l->jitter = 0x9E3779B97F4A7C15ULL;
        for (const char *p = key; *p; p++)
                l->jitter = (l->jitter ^ (uint8_t) *p) * 0x100000001B3ULL;
        l->jitter |= 1;

        *ret = TAKE_PTR(l);
        return 0;
}

Link *link_free(Link *l) {
        if (!l)
                return NULL;
        /* No on_state from here: the owner is tearing down. */
        l->cb.on_state = NULL;
        link_stop(l, true);
        sd_event_source_disable_unref(l->timer);
        free(l->path);
        sd_event_unref(l->event);
        sd_bus_unref(l->bus);
        return mfree(l);
}

LinkState link_get_state(const Link *l) {
        return l->state;
}

const Profile *link_get_profile(const Link *l) {
        return l->profile;
}

const char *link_get_path(const Link *l) {
        return l->path;
}

const char *link_get_device_id(const Link *l) {
        return l->id;
}

uint64_t link_get_retry_usec(const Link *l) {
        return l->retry_usec;
}

void link_get_stats(const Link *l, LinkStats *ret) {
        *ret = l->stats;
}
