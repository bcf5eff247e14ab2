/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Names of the reading's channels and the rules for device ids, shared by every parser and
 * every output so a channel is spelled one way across CSV, JSON, MQTT and D-Bus.
 */

#include <string.h>

#include "macro.h"
#include "reading.h"

static const char *const channel_names[_CHANNEL_MAX] = {
        [CHANNEL_AX] = "ax", [CHANNEL_AY] = "ay", [CHANNEL_AZ] = "az",
        [CHANNEL_GX] = "gx", [CHANNEL_GY] = "gy", [CHANNEL_GZ] = "gz",
        [CHANNEL_MX] = "mx", [CHANNEL_MY] = "my", [CHANNEL_MZ] = "mz",
        [CHANNEL_OA] = "oa", [CHANNEL_OB] = "ob", [CHANNEL_OG] = "og",
};

const char *channel_to_string(Channel c) {
        if (c < 0 || c >= _CHANNEL_MAX)
                return NULL;
        return channel_names[c];
}

Channel channel_from_substring(const char *s, size_t n) {
        if (!s || n != 2)
                return _CHANNEL_INVALID;
        for (Channel c = 0; c < _CHANNEL_MAX; c++)
                if (memcmp(channel_names[c], s, 2) == 0)
                        return c;
        return _CHANNEL_INVALID;
}

Channel channel_from_string(const char *s) {
        return s ? channel_from_substring(s, strlen(s)) : _CHANNEL_INVALID;
}

bool device_id_is_valid(const char *s, size_t n) {
        if (!s || n == 0 || n > DEVICE_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.'))
                        return false;
        }
        return true;
}
