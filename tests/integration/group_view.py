"""What the broker says about a consumer group, for tests that must not trust our own log:
its committed offsets (AdminClient list_consumer_group_offsets) and its members."""
from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient


class GroupView:
    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.group, self.topic, self.partitions = group, topic, partitions

    def committed(self) -> dict[int, int]:
        """{partition: committed offset} (-1001 where none)."""
        request = ConsumerGroupTopicPartitions(self.group, [TopicPartition(self.topic, p) for p in range(self.partitions)])
        futures = self.admin.list_consumer_group_offsets([request], request_timeout=20)
        result = futures[self.group].result(timeout=30)
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    def members(self) -> list[tuple[str, tuple[int, ...]]]:
        """[(member id, assigned partitions)] of the group, as its coordinator sees them."""
        description = self.admin.describe_consumer_groups([self.group], request_timeout=20)[self.group].result(timeout=30)
        return sorted((m.member_id, tuple(sorted(tp.partition for tp in m.assignment.topic_partitions)))
                      for m in description.members)

    def owners(self) -> dict[int, str]:
        """{partition: who owns it}: the member's group.instance.id when static, else its member id."""
        description = self.admin.describe_consumer_groups([self.group], request_timeout=20)[self.group].result(timeout=30)
        return {tp.partition: m.group_instance_id or m.member_id
                for m in description.members for tp in m.assignment.topic_partitions}
