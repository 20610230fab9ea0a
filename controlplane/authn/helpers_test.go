package authn_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
)

type bigInt = big.Int

func rsaVerify(pub *rsa.PublicKey, signed string, sig []byte) error {
	sum := sha256.Sum256([]byte(signed))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig)
}
