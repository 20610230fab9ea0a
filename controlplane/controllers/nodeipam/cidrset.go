package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net"
)

// ErrFull is returned when every subnet of the cluster CIDR is taken.
var ErrFull = errors.New("nodeipam: cluster CIDR is full")

// CIDRSet hands out fixed-size subnets of one cluster CIDR. Allocation
// rotates from after the last allocated subnet, as upstream's cidrset does,
// so a just-released range is not handed out again at once while any other
// is free. It is not safe for concurrent use.
type CIDRSet struct {
	cluster  *net.IPNet
	maskSize int
	bits     int // address length (32 or 128)
	n        int // number of subnets
	used     []bool
	free     int
	next     int
}

// maxSubnets bounds the bitmap (upstream limits the difference between
// the cluster and node mask sizes to 16 bits).
const maxSubnets = 1 << 16

// NewCIDRSet splits cluster into subnets of maskSize bits.
func NewCIDRSet(cluster *net.IPNet, maskSize int) (*CIDRSet, error) {
	ones, bits := cluster.Mask.Size()
	if maskSize < ones || maskSize > bits {
		return nil, fmt.Errorf("nodeipam: node mask size %d does not fit cluster CIDR %s", maskSize, cluster)
	}
	if maskSize-ones > 16 {
		return nil, fmt.Errorf("nodeipam: cluster CIDR %s with node mask %d gives more than %d subnets", cluster, maskSize, maxSubnets)
	}
	n := 1 << (maskSize - ones)
	ip := cluster.IP.Mask(cluster.Mask)
	if bits == 32 {
		ip = ip.To4()
	}
	return &CIDRSet{cluster: &net.IPNet{IP: ip, Mask: cluster.Mask}, maskSize: maskSize, bits: bits, n: n, used: make([]bool, n), free: n}, nil
}

// Size is the number of subnets; Free how many are not allocated.
func (s *CIDRSet) Size() int { return s.n }

// Free is the number of unallocated subnets.
func (s *CIDRSet) Free() int { return s.free }

func (s *CIDRSet) subnet(i int) *net.IPNet {
	base := new(big.Int).SetBytes(s.cluster.IP)
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(s.bits-s.maskSize))
	b := new(big.Int).Add(base, off).Bytes()
	ip := make(net.IP, s.bits/8)
	copy(ip[len(ip)-len(b):], b)
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(s.maskSize, s.bits)}
}

// index returns the subnet index of cidr, or an error when cidr is not
// exactly one subnet of the set.
func (s *CIDRSet) index(cidr *net.IPNet) (int, error) {
	ones, bits := cidr.Mask.Size()
	ip := cidr.IP
	if bits == 32 {
		ip = ip.To4()
	}
	if bits != s.bits || ones != s.maskSize || ip == nil || !s.cluster.Contains(ip) {
		return 0, fmt.Errorf("nodeipam: %s is not a /%d subnet of %s", cidr, s.maskSize, s.cluster)
	}
	base := new(big.Int).SetBytes(s.cluster.IP)
	off := new(big.Int).Sub(new(big.Int).SetBytes(ip), base)
	off.Rsh(off, uint(s.bits-s.maskSize))
	return int(off.Int64()), nil
}

// Contains reports whether cidr is one of the set's subnets.
func (s *CIDRSet) Contains(cidr *net.IPNet) bool {
	_, err := s.index(cidr)
	return err == nil
}

// Allocate takes the next free subnet.
func (s *CIDRSet) Allocate() (*net.IPNet, error) {
	if s.free == 0 {
		return nil, ErrFull
	}
	for k := 0; k < s.n; k++ {
		i := (s.next + k) % s.n
		if !s.used[i] {
			s.used[i] = true
			s.free--
			s.next = (i + 1) % s.n
			return s.subnet(i), nil
		}
	}
	return nil, ErrFull
}

// Occupy marks cidr as allocated; it reports whether it was free.
func (s *CIDRSet) Occupy(cidr *net.IPNet) (bool, error) {
	i, err := s.index(cidr)
	if err != nil {
		return false, err
	}
	if s.used[i] {
		return false, nil
	}
	s.used[i] = true
	s.free--
	return true, nil
}

// Release frees cidr.
func (s *CIDRSet) Release(cidr *net.IPNet) error {
	i, err := s.index(cidr)
	if err != nil {
		return err
	}
	if s.used[i] {
		s.used[i] = false
		s.free++
	}
	return nil
}
