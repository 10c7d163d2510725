#!/usr/bin/env python3
"""Known-answer vectors for cardmesh-drivers' crypto, computed independently of the Rust
code with pycryptodome (`pip install pycryptodome`). Run it and paste the printed hex into
drivers/tests/crypto_kat.rs; the inputs below are the same constants used there.

Rules implemented here straight from shared/reference/pboc-epurse.md and the choices
documented in drivers/src/constants.rs (type codes) and drivers/src/keys.rs (master-key
derivation labels)."""
from Crypto.Cipher import DES, DES3


def h(s):
    return bytes.fromhex(s)


def tdes(key16, block):
    # DES3 refuses keys whose halves are equal (degenerate to DES); ours never are.
    return DES3.new(key16, DES3.MODE_ECB).encrypt(block)


def des_enc(k8, block):
    return DES.new(k8, DES.MODE_ECB).encrypt(block)


def des_dec(k8, block):
    return DES.new(k8, DES.MODE_ECB).decrypt(block)


def pad80(data):
    data = data + b"\x80"
    while len(data) % 8:
        data += b"\x00"
    return data


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def mac_des(k8, data, iv=bytes(8)):
    """Single-DES CBC-MAC, 80-padding, leftmost 4 bytes."""
    state = iv
    data = pad80(data)
    for i in range(0, len(data), 8):
        state = des_enc(k8, xor(state, data[i:i + 8]))
    return state[:4]


def mac_alg3(k16, data, iv=bytes(8)):
    """ISO 9797-1 MAC algorithm 3 (retail MAC), padding method 2, leftmost 4 bytes."""
    k1, k2 = k16[:8], k16[8:]
    state = iv
    data = pad80(data)
    for i in range(0, len(data), 8):
        state = des_enc(k1, xor(state, data[i:i + 8]))
    state = des_enc(k1, des_dec(k2, state))
    return state[:4]


def kcv(k16):
    return tdes(k16, bytes(8))[:3]


def diversify(mk, asn8):
    return tdes(mk, asn8) + tdes(mk, xor(asn8, b"\xff" * 8))


def tac_key(dtk):
    return xor(dtk[:8], dtk[8:])


def u32(v):
    return v.to_bytes(4, "big")


def u16(v):
    return v.to_bytes(2, "big")


TX_LOAD, TX_PURCHASE, TX_GREY_LOCK, TX_UNLOCK = b"\x02", b"\x06", b"\x91", b"\x93"

MK_PURCHASE = h("0123456789ABCDEFFEDCBA9876543210")
MK_LOAD = h("00112233445566778899AABBCCDDEEFF")
MK_TAC = h("F0E1D2C3B4A5968778695A4B3C2D1E0F")
MK_MAINT = h("2B7E151628AED2A6ABF7158809CF4F3C")
ASN = h("3100000000000042")
TERM = h("112233445566")
DT = h("20250301123456")


def show(name, value):
    print(f"{name} = {value.hex().upper()}")


show("kcv(MK_PURCHASE)", kcv(MK_PURCHASE))
show("kcv(MK_LOAD)", kcv(MK_LOAD))
show("mac_des(K8=0123456789ABCDEF, 'cardmesh MAC test')", mac_des(h("0123456789ABCDEF"), b"cardmesh MAC test"))
show("mac_des(K8=0123456789ABCDEF, 8 zero bytes)", mac_des(h("0123456789ABCDEF"), bytes(8)))
dpk = diversify(MK_PURCHASE, ASN)
dlk = diversify(MK_LOAD, ASN)
dtk = diversify(MK_TAC, ASN)
show("DPK", dpk)
show("DLK", dlk)
show("DTK", dtk)
show("tac_key(DTK)", tac_key(dtk))

# Purchase: random 1A2B3C4D, offline counter 5, terminal sequence 0x00000123, 12.34 yuan.
rnd, ctr, seq, amt = h("1A2B3C4D"), 5, 0x123, 1234
sespk = tdes(dpk, rnd + u16(ctr) + u32(seq)[2:])
show("SESPK", sespk)
show("purchase MAC1", mac_des(sespk, u32(amt) + TX_PURCHASE + TERM + DT))
show("purchase MAC2", mac_des(sespk, u32(amt)))
show("purchase TAC", mac_des(tac_key(dtk), u32(amt) + TX_PURCHASE + TERM + u32(seq) + DT))

# Load: random 99887766, online counter 2, old balance 50.00, amount 100.00.
rnd, octr, old, amt = h("99887766"), 2, 5000, 10000
seslk = tdes(dlk, rnd + u16(octr) + b"\x80\x00")
show("SESLK", seslk)
show("load MAC1", mac_des(seslk, u32(old) + u32(amt) + TX_LOAD + TERM))
show("load MAC2", mac_des(seslk, u32(amt) + TX_LOAD + TERM + DT))
show("load TAC", mac_des(tac_key(dtk), u32(old + amt) + u16(octr) + u32(amt) + TX_LOAD + TERM + DT))

# Grey lock: a zero-amount purchase with type 91 (see drivers/src/crypto.rs).
rnd, ctr, seq = h("0BADF00D"), 7, 0x200
ses = tdes(dpk, rnd + u16(ctr) + u32(seq)[2:])
show("grey SESPK", ses)
show("grey lock MAC1", mac_des(ses, u32(0) + TX_GREY_LOCK + TERM + DT))
show("grey lock MAC2", mac_des(ses, u32(0)))
gtac = mac_des(tac_key(dtk), u32(0) + TX_GREY_LOCK + TERM + u32(seq) + DT)
show("GTAC", gtac)

# Debit for unlock: the GTAC stands in for the card random, counter 8, sequence 0x201, 45.67 yuan.
ctr, seq, amt = 8, 0x201, 4567
sesuk = tdes(dpk, gtac + u16(ctr) + u32(seq)[2:])
show("unlock session key", sesuk)
show("GMAC", mac_des(sesuk, u32(amt) + TX_UNLOCK + TERM + DT))
show("unlock TAC", mac_des(tac_key(dtk), u32(amt) + TX_UNLOCK + TERM + u32(seq) + DT))

# Application maintenance (block/unblock) with the 16-byte diversified maintenance key:
# ISO 9797-1 algorithm 3 over the command header, IV = challenge || 00000000.
damk = diversify(MK_MAINT, ASN)
show("DAMK", damk)
show("app block MAC", mac_alg3(damk, h("841E000004"), h("CAFEBABE") + bytes(4)))
show("alg3 MAC, zero IV, 'cardmesh MAC test'", mac_alg3(MK_MAINT, b"cardmesh MAC test"))

# Key ceremony: combined = A xor B; master key X = 3DES_C(label1) || 3DES_C(label2).
comp_a = h("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8")
comp_b = h("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
combined = xor(comp_a, comp_b)
show("kcv(component A)", kcv(comp_a))
show("kcv(component B)", kcv(comp_b))
show("combined", combined)
show("kcv(combined)", kcv(combined))
for code in ["PURCH", "LOAD_", "TAC__", "PINUB", "MAINT"]:
    mk = tdes(combined, f"CM{code}1".encode()) + tdes(combined, f"CM{code}2".encode())
    show(f"master {code}", mk)
    show(f"kcv(master {code})", kcv(mk))
