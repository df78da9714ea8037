/*
 * relentless_signal.h: read and write relentless-fast trading signals (layout v1) in C99.
 *
 * A signal is exactly 64 bytes in network byte order (big-endian); bytes 60..63 hold the
 * CRC-32C (Castagnoli) of bytes 0..59. See docs/signal-format.md for the field table.
 *
 * Header-only, no dependencies beyond <stdint.h>, <stddef.h> and <string.h>; every function is
 * `static inline`. The accessors take a pointer to the first byte of a signal and make no
 * alignment assumption. Validate a signal with rf_signal_validate() before trusting its fields.
 *
 * Transport framing (MoldUDP64 over UDP, SoupBinTCP 3.00 over TCP) is described in
 * docs/signal-format.md; each framed message is one 64-byte signal.
 */
#ifndef RELENTLESS_SIGNAL_H
#define RELENTLESS_SIGNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RF_SIGNAL_SIZE 64u
#define RF_SIGNAL_MAGIC 0x5246u /* "RF" */
#define RF_SIGNAL_LAYOUT_VERSION 1u
#define RF_SIGNAL_CRC_COVERED 60u

/* Actions (byte 3). */
#define RF_ACTION_HOLD 0u
#define RF_ACTION_BUY 1u
#define RF_ACTION_SELL 2u

/* Flag bits (bytes 54..55). Bits 5..15 are reserved: zero when written, ignored when read. */
#define RF_FLAG_CANARY 0x0001u
#define RF_FLAG_CONTEXT_STALE 0x0002u
#define RF_FLAG_FALLBACK 0x0004u
#define RF_FLAG_COALESCED 0x0008u
#define RF_FLAG_HALTED 0x0010u

/* Field byte offsets. */
#define RF_OFF_MAGIC 0u
#define RF_OFF_LAYOUT_VERSION 2u
#define RF_OFF_ACTION 3u
#define RF_OFF_SYMBOL_ID 4u
#define RF_OFF_SEQUENCE 8u
#define RF_OFF_EVENT_TS_NS 16u
#define RF_OFF_EMIT_TS_NS 24u
#define RF_OFF_CONFIDENCE 32u
#define RF_OFF_PRICE_TARGET 36u
#define RF_OFF_STOP_LOSS 40u
#define RF_OFF_POSITION_SIZE 44u
#define RF_OFF_RISK_SCORE 48u
#define RF_OFF_URGENCY 49u
#define RF_OFF_STRATEGY_ID 50u
#define RF_OFF_MODEL_VERSION 52u
#define RF_OFF_FLAGS 54u
#define RF_OFF_CONTEXT_VERSION 56u
#define RF_OFF_CRC32C 60u

/* Result of rf_signal_validate(). */
typedef enum rf_signal_status {
    RF_SIGNAL_OK = 0,
    RF_SIGNAL_BAD_LENGTH = 1,  /* buffer length is not a multiple of 64 */
    RF_SIGNAL_BAD_MAGIC = 2,
    RF_SIGNAL_BAD_VERSION = 3,
    RF_SIGNAL_BAD_CRC = 4,
    RF_SIGNAL_BAD_ACTION = 5
} rf_signal_status;

/* ---- big-endian load / store ---------------------------------------------------------------- */

static inline uint16_t rf_load_be16(const uint8_t *p) {
    return (uint16_t)(((uint16_t)p[0] << 8) | (uint16_t)p[1]);
}

static inline uint32_t rf_load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t rf_load_be64(const uint8_t *p) {
    return ((uint64_t)rf_load_be32(p) << 32) | (uint64_t)rf_load_be32(p + 4);
}

static inline float rf_load_bef32(const uint8_t *p) {
    uint32_t bits = rf_load_be32(p);
    float f;
    memcpy(&f, &bits, sizeof f); /* IEEE-754 binary32 assumed (every mainstream target) */
    return f;
}

static inline void rf_store_be16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void rf_store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void rf_store_be64(uint8_t *p, uint64_t v) {
    rf_store_be32(p, (uint32_t)(v >> 32));
    rf_store_be32(p + 4, (uint32_t)v);
}

static inline void rf_store_bef32(uint8_t *p, float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    rf_store_be32(p, bits);
}

/* ---- field accessors (s points at the first byte of a 64-byte signal) ------------------------ */

static inline uint16_t rf_signal_magic(const uint8_t *s) { return rf_load_be16(s + RF_OFF_MAGIC); }
static inline uint8_t rf_signal_layout_version(const uint8_t *s) { return s[RF_OFF_LAYOUT_VERSION]; }
static inline uint8_t rf_signal_action(const uint8_t *s) { return s[RF_OFF_ACTION]; }
static inline uint32_t rf_signal_symbol_id(const uint8_t *s) { return rf_load_be32(s + RF_OFF_SYMBOL_ID); }
static inline uint64_t rf_signal_sequence(const uint8_t *s) { return rf_load_be64(s + RF_OFF_SEQUENCE); }
static inline uint64_t rf_signal_event_ts_ns(const uint8_t *s) { return rf_load_be64(s + RF_OFF_EVENT_TS_NS); }
static inline uint64_t rf_signal_emit_ts_ns(const uint8_t *s) { return rf_load_be64(s + RF_OFF_EMIT_TS_NS); }
static inline float rf_signal_confidence(const uint8_t *s) { return rf_load_bef32(s + RF_OFF_CONFIDENCE); }
static inline float rf_signal_price_target(const uint8_t *s) { return rf_load_bef32(s + RF_OFF_PRICE_TARGET); }
static inline float rf_signal_stop_loss(const uint8_t *s) { return rf_load_bef32(s + RF_OFF_STOP_LOSS); }
static inline float rf_signal_position_size(const uint8_t *s) { return rf_load_bef32(s + RF_OFF_POSITION_SIZE); }
static inline uint8_t rf_signal_risk_score(const uint8_t *s) { return s[RF_OFF_RISK_SCORE]; }
static inline uint8_t rf_signal_urgency(const uint8_t *s) { return s[RF_OFF_URGENCY]; }
static inline uint16_t rf_signal_strategy_id(const uint8_t *s) { return rf_load_be16(s + RF_OFF_STRATEGY_ID); }
static inline uint16_t rf_signal_model_version(const uint8_t *s) { return rf_load_be16(s + RF_OFF_MODEL_VERSION); }
static inline uint16_t rf_signal_flags(const uint8_t *s) { return rf_load_be16(s + RF_OFF_FLAGS); }
static inline uint32_t rf_signal_context_version(const uint8_t *s) { return rf_load_be32(s + RF_OFF_CONTEXT_VERSION); }
static inline uint32_t rf_signal_crc32c(const uint8_t *s) { return rf_load_be32(s + RF_OFF_CRC32C); }

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and xor-out 0xFFFFFFFF) ------ */

/* Continues a CRC over more bytes: rf_crc32c_update(rf_crc32c_update(0, a, n), b, m) is the CRC
 * of a followed by b. Start with crc = 0. Bitwise: small and portable, about 1 byte per few ns. */
static inline uint32_t rf_crc32c_update(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (len--) {
        int k;
        crc ^= *p++;
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* CRC-32C of len bytes; rf_crc32c("123456789", 9) == 0xE3069283. */
static inline uint32_t rf_crc32c(const void *data, size_t len) {
    return rf_crc32c_update(0u, data, len);
}

/* ---- validation and encoding ----------------------------------------------------------------- */

/* Checks one 64-byte signal: magic, layout version, CRC, action (in that order). */
static inline rf_signal_status rf_signal_validate(const uint8_t *s) {
    if (rf_signal_magic(s) != RF_SIGNAL_MAGIC) return RF_SIGNAL_BAD_MAGIC;
    if (rf_signal_layout_version(s) != RF_SIGNAL_LAYOUT_VERSION) return RF_SIGNAL_BAD_VERSION;
    if (rf_signal_crc32c(s) != rf_crc32c(s, RF_SIGNAL_CRC_COVERED)) return RF_SIGNAL_BAD_CRC;
    if (rf_signal_action(s) > RF_ACTION_SELL) return RF_SIGNAL_BAD_ACTION;
    return RF_SIGNAL_OK;
}

/* Checks a buffer of len bytes holding consecutive signals. On failure *bad_offset (if not NULL)
 * receives the byte offset of the offending signal (for a bad length: where the trailing partial
 * signal starts). */
static inline rf_signal_status rf_signal_validate_buffer(const uint8_t *buf, size_t len,
                                                         size_t *bad_offset) {
    size_t off;
    if (len % RF_SIGNAL_SIZE != 0) {
        if (bad_offset) *bad_offset = len - len % RF_SIGNAL_SIZE;
        return RF_SIGNAL_BAD_LENGTH;
    }
    for (off = 0; off < len; off += RF_SIGNAL_SIZE) {
        rf_signal_status st = rf_signal_validate(buf + off);
        if (st != RF_SIGNAL_OK) {
            if (bad_offset) *bad_offset = off;
            return st;
        }
    }
    return RF_SIGNAL_OK;
}

/* A signal's fields in native form. */
typedef struct rf_signal {
    uint8_t action;
    uint32_t symbol_id;
    uint64_t sequence;
    uint64_t event_ts_ns;
    uint64_t emit_ts_ns;
    float confidence;
    float price_target;
    float stop_loss;
    float position_size;
    uint8_t risk_score;
    uint8_t urgency;
    uint16_t strategy_id;
    uint16_t model_version;
    uint16_t flags;
    uint32_t context_version;
} rf_signal;

/* Reads every field (does not validate). */
static inline void rf_signal_decode(const uint8_t *s, rf_signal *out) {
    out->action = rf_signal_action(s);
    out->symbol_id = rf_signal_symbol_id(s);
    out->sequence = rf_signal_sequence(s);
    out->event_ts_ns = rf_signal_event_ts_ns(s);
    out->emit_ts_ns = rf_signal_emit_ts_ns(s);
    out->confidence = rf_signal_confidence(s);
    out->price_target = rf_signal_price_target(s);
    out->stop_loss = rf_signal_stop_loss(s);
    out->position_size = rf_signal_position_size(s);
    out->risk_score = rf_signal_risk_score(s);
    out->urgency = rf_signal_urgency(s);
    out->strategy_id = rf_signal_strategy_id(s);
    out->model_version = rf_signal_model_version(s);
    out->flags = rf_signal_flags(s);
    out->context_version = rf_signal_context_version(s);
}

/* Writes the 64 wire bytes of sig (magic, version, fields, CRC) to out. */
static inline void rf_signal_encode(const rf_signal *sig, uint8_t *out) {
    rf_store_be16(out + RF_OFF_MAGIC, (uint16_t)RF_SIGNAL_MAGIC);
    out[RF_OFF_LAYOUT_VERSION] = (uint8_t)RF_SIGNAL_LAYOUT_VERSION;
    out[RF_OFF_ACTION] = sig->action;
    rf_store_be32(out + RF_OFF_SYMBOL_ID, sig->symbol_id);
    rf_store_be64(out + RF_OFF_SEQUENCE, sig->sequence);
    rf_store_be64(out + RF_OFF_EVENT_TS_NS, sig->event_ts_ns);
    rf_store_be64(out + RF_OFF_EMIT_TS_NS, sig->emit_ts_ns);
    rf_store_bef32(out + RF_OFF_CONFIDENCE, sig->confidence);
    rf_store_bef32(out + RF_OFF_PRICE_TARGET, sig->price_target);
    rf_store_bef32(out + RF_OFF_STOP_LOSS, sig->stop_loss);
    rf_store_bef32(out + RF_OFF_POSITION_SIZE, sig->position_size);
    out[RF_OFF_RISK_SCORE] = sig->risk_score;
    out[RF_OFF_URGENCY] = sig->urgency;
    rf_store_be16(out + RF_OFF_STRATEGY_ID, sig->strategy_id);
    rf_store_be16(out + RF_OFF_MODEL_VERSION, sig->model_version);
    rf_store_be16(out + RF_OFF_FLAGS, sig->flags);
    rf_store_be32(out + RF_OFF_CONTEXT_VERSION, sig->context_version);
    rf_store_be32(out + RF_OFF_CRC32C, rf_crc32c(out, RF_SIGNAL_CRC_COVERED));
}

#ifdef __cplusplus
}
#endif

#endif /* RELENTLESS_SIGNAL_H */
