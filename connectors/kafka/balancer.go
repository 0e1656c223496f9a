package kafka

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// copartitioned is the group balancer of a node: a partition task owns one
// partition number of every topic it consumes (sources and repartition
// topics), so partition p of every topic must go to the same member.
// Partitions of the lead topic are balanced with cooperative-sticky; every
// other topic's partition p follows lead partition p. Cooperative
// rebalancing holds for the followers too: a partition that moves is
// revoked by its owner in one round and assigned in the next.
type copartitioned struct {
	kgo.GroupBalancer // cooperative-sticky: join metadata, parsing
	lead              string
}

// stickyBalance is the method of franz-go's sticky balancer that computes a
// plan for the given topics.
type stickyBalance interface {
	Balance(*kgo.ConsumerBalancer, map[string]int32) kgo.IntoSyncAssignment
}

func newCopartitioned(lead string) *copartitioned {
	return &copartitioned{GroupBalancer: kgo.CooperativeStickyBalancer(), lead: lead}
}

func (c *copartitioned) ProtocolName() string { return "pheromone-copartitioned" }

func (c *copartitioned) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(c, members)
	if err != nil {
		return nil, nil, err
	}
	return b, b.MemberTopics(), nil
}

func (c *copartitioned) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	inner := c.GroupBalancer.(stickyBalance)
	n, ok := topics[c.lead]
	if !ok {
		return inner.Balance(b, topics)
	}
	plan := inner.Balance(b, map[string]int32{c.lead: n}).(*kgo.BalancePlan)
	members := b.Members()
	byID := make(map[string]*kmsg.JoinGroupResponseMember, len(members))
	for i := range members {
		byID[members[i].MemberID] = &members[i]
	}
	for id, ts := range plan.AsMemberIDMap() {
		for _, p := range ts[c.lead] {
			for t, tn := range topics {
				if t != c.lead && p < tn {
					plan.AddPartition(byID[id], t, p)
				}
			}
		}
	}
	// Followers a member owns may be planned for another (a group that ran
	// an older balancer): withhold them this round, as for the lead.
	plan.AdjustCooperative(b)
	return plan
}
