/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * RuuviTag data formats 5 and 3 (docs.ruuvi.com, "Bluetooth advertisements"). Both are
 * big-endian. Format 5 marks every unavailable field with a sentinel (the most negative int16,
 * or all ones), which becomes an invalid field or, for an acceleration axis, a channel left
 * out of the reading: a "not available" must never reach the detector as a number. Format 3
 * has no sentinels. Values are computed as integer / power-of-ten divisor, so decimal
 * quantities such as 24.3 °C come out as the nearest double and print as written.
 */

#include <stdio.h>

#include "profile-ruuvi.h"

enum {
        RUUVI_FORMAT_3 = 0x03,
        RUUVI_FORMAT_5 = 0x05,
        RUUVI_FORMAT_AIR = 0x06,
        RUUVI_FORMAT_8 = 0x08,
        RUUVI_FORMAT_5_NO_MOTION = 0xC5,
        RUUVI_FORMAT_AIR_EXTENDED = 0xE1,
};

static double mg_to_ms2(int mg) {
        return mg * STANDARD_GRAVITY / 1000;
}

static void decode_format_5(const uint8_t *d, ProfileFrame *f) {
        int16_t temperature = (int16_t) profile_read_be16(d + 1);
        uint16_t humidity = profile_read_be16(d + 3), pressure = profile_read_be16(d + 5),
                 power = profile_read_be16(d + 13), sequence = profile_read_be16(d + 16);
        uint8_t movement = d[15];
        unsigned battery = power >> 5, tx_power = power & 0x1F;
        bool mac_valid = false;
        char mac[13];

        for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++) {
                int16_t a = (int16_t) profile_read_be16(d + 7 + 2 * (c - CHANNEL_AX));

                if (a != INT16_MIN)
                        reading_set(&f->reading, c, mg_to_ms2(a));
        }

        for (size_t i = 0; i < 6; i++) {
                snprintf(mac + 2 * i, sizeof(mac) - 2 * i, "%02x", d[18 + i]);
                if (d[18 + i] != 0xFF)
                        mac_valid = true;
        }

        profile_frame_add_number(f, "data_format", RUUVI_FORMAT_5, true);
        profile_frame_add_number(f, "temperature", temperature / 200.0, temperature != INT16_MIN);
        profile_frame_add_number(f, "humidity", humidity / 400.0, humidity != 0xFFFF);
        profile_frame_add_number(f, "pressure", pressure + 50000, pressure != 0xFFFF);
        profile_frame_add_number(f, "battery", battery + 1600, battery != 0x7FF);
        profile_frame_add_number(f, "tx_power", (int) tx_power * 2 - 40, tx_power != 0x1F);
        profile_frame_add_number(f, "movement_counter", movement, movement != 0xFF);
        profile_frame_add_number(f, "measurement_sequence", sequence, sequence != 0xFFFF);
        profile_frame_add_text(f, "mac", mac, mac_valid);

        if (sequence != 0xFFFF) {
                f->has_sensor_seq = true;
                f->sensor_seq = sequence;
        }
}

static void decode_format_3(const uint8_t *d, ProfileFrame *f) {
        uint8_t humidity = d[1], integer = d[2] & 0x7F, fraction = d[3];
        /* Sign and magnitude; computed in hundredths so "-0.00" is plain zero. */
        int centi = (integer * 100 + fraction) * (d[2] & 0x80 ? -1 : 1);

        for (Channel c = CHANNEL_AX; c <= CHANNEL_AZ; c++)
                reading_set(&f->reading, c, mg_to_ms2((int16_t) profile_read_be16(d + 6 + 2 * (c - CHANNEL_AX))));

        profile_frame_add_number(f, "data_format", RUUVI_FORMAT_3, true);
        /* The fraction is in hundredths: anything above 99 is not a temperature. */
        profile_frame_add_number(f, "temperature", centi / 100.0, fraction <= 99);
        profile_frame_add_number(f, "humidity", humidity / 2.0, true);
        profile_frame_add_number(f, "pressure", profile_read_be16(d + 4) + 50000, true);
        profile_frame_add_number(f, "battery", profile_read_be16(d + 12), true);
}

int profile_ruuvi_decode(const uint8_t *data, size_t size, ProfileFrame *ret) {
        if (size < 1)
                return -EBADMSG;

        switch (data[0]) {
        case RUUVI_FORMAT_5:
                if (size != RUUVI_FORMAT_5_SIZE)
                        return -EBADMSG;
                profile_frame_init(ret);
                decode_format_5(data, ret);
                return 0;

        case RUUVI_FORMAT_3:
                if (size != RUUVI_FORMAT_3_SIZE)
                        return -EBADMSG;
                profile_frame_init(ret);
                decode_format_3(data, ret);
                return 0;

        case RUUVI_FORMAT_AIR:
        case RUUVI_FORMAT_8:
        case RUUVI_FORMAT_5_NO_MOTION:
        case RUUVI_FORMAT_AIR_EXTENDED:
                return -EOPNOTSUPP;

        default:
                return -EBADMSG;
        }
}

static int ruuvi_decode(const ProfileSettings *settings, const uint8_t *data, size_t size, ProfileFrame *ret,
                        size_t n_ret) {
        int k;

        if (n_ret < 1)
                return -ENOBUFS;
        k = profile_ruuvi_decode(data, size, ret);
        return k < 0 ? k : 1;
}

const ProfileDecoder profile_ruuvi_decoder = {
        .name = "ruuvi",
        .channels = CHANNEL_BIT(CHANNEL_AX) | CHANNEL_BIT(CHANNEL_AY) | CHANNEL_BIT(CHANNEL_AZ),
        .frames_max = 1,
        .expect = "24 bytes of data format 5 or 14 bytes of data format 3, starting with the format byte "
                  "(the value of manufacturer data key 0x0499)",
        .decode = ruuvi_decode,
};

const Profile profile_ruuvi = {
        .kind = PROFILE_RUUVI,
        .name = "ruuvi",
        .company_id = RUUVI_COMPANY_ID,
        .advert = &profile_ruuvi_decoder,
};
