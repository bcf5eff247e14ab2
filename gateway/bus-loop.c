/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Driving an sd-bus connection from sd-event with coalesced input (see bus-loop.h). The shape
 * is sd_bus_attach_event()'s: an I/O source on the connection's fd whose prepare callback asks
 * sd-bus which events it waits for and when its next timeout is due (a method call's, or "now"
 * when messages are already queued), and a timer for that timeout; both process the connection.
 * The difference is the rate limit on the I/O source, and that each dispatch handles every
 * message available instead of one.
 */

#include "bus-loop.h"

struct BusLoop {
        sd_bus *bus;
        sd_event_source *io, *timer;
};

static void bus_loop_process(BusLoop *l) {
        for (unsigned n = 0; n < BUS_LOOP_BATCH_MAX; n++) {
                /* > 0: something was done and more may be pending; 0: nothing left. On error
                 * sd-bus has entered its closing state and delivers Disconnected next time. */
                if (sd_bus_process(l->bus, NULL) <= 0)
                        break;
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        bus_loop_process(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        bus_loop_process(userdata);
        return 0;
}

/* Before each wait: what the connection waits for, and until when. */
static int on_prepare(sd_event_source *s, void *userdata) {
        BusLoop *l = userdata;
        uint64_t until;
        int events, k;

        events = sd_bus_get_events(l->bus);
        if (events < 0) {
                /* Closed: nothing to wait for any more; the owner will drop it. */
                (void) sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                return 0;
        }
        (void) sd_event_source_set_io_events(l->io, (uint32_t) events);

        k = sd_bus_get_timeout(l->bus, &until);
        if (k <= 0 || until == UINT64_MAX) {
                (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                return 0;
        }
        (void) sd_event_source_set_time(l->timer, until);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        return 0;
}

int bus_loop_attach(sd_bus *bus, sd_event *event, BusLoop **ret) {
        _cleanup_(bus_loop_detachp) BusLoop *l = NULL;
        int fd, k;

        fd = sd_bus_get_fd(bus);
        if (fd < 0)
                return fd;
        l = new0(BusLoop, 1);
        if (!l)
                return -ENOMEM;
        l->bus = sd_bus_ref(bus);

        k = sd_event_add_io(event, &l->io, fd, 0, on_io, l);
        if (k < 0)
                return k;
        k = sd_event_source_set_prepare(l->io, on_prepare);
        if (k < 0)
                return k;
        k = sd_event_source_set_ratelimit(l->io, BUS_LOOP_INTERVAL_USEC, BUS_LOOP_BURST);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(l->io, "bus-input");
        k = sd_event_add_time(event, &l->timer, CLOCK_MONOTONIC, 0, 0, on_timer, l);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(l->timer, "bus-timeout");
        /* As sd_bus_attach_event() does: the first prepare arms both. */
        k = sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(l);
        return 0;
}

BusLoop *bus_loop_detach(BusLoop *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        sd_bus_unref(l->bus);
        return mfree(l);
}
