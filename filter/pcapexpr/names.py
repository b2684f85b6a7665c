"""Named constants of the pcap-filter language, built in (a sandboxed component reads no files).

Keywords and constants are libpcap's scanner.l. Service and protocol names are Debian 12's
/etc/services and /etc/protocols entries (the oracle tcpdump reads those), for the common ones.
"""

_KEYWORD_KINDS = {
    "link": "link ether ppp slip fddi tr wlan",
    "esis": "esis es-is",
    "isis": "isis is-is",
    "dir": "direction dir",
    "addr1": "address1 addr1",
    "addr2": "address2 addr2",
    "addr3": "address3 addr3",
    "addr4": "address4 addr4",
    "len": "len length",
    "lssu": "lssu lsu",
    "ifname": "on ifname",
    "rset": "rset ruleset",
    "rnr": "rnr rulenum",
    "srnr": "srnr subrulenum",
}
_PLAIN_KEYWORDS = """dst src arp rarp ip sctp tcp udp icmp igmp igrp pim vrrp carp radio ip6 icmp6
ah esp atalk aarp decnet lat sca moprc mopdl iso l1 l2 iih lsp snp csnp psnp clnp stp ipx
netbeui host net mask port portrange proto protochain gateway type subtype ra ta less greater
byte broadcast multicast and or not inbound outbound ifindex vlan mpls pppoed pppoes geneve
vxlan lane llc metac bcc oam oamf4 oamf4ec oamf4sc sc ilmic vpi vci connectmsg metaconnect
reason action fisu msu hfisu hlssu hmsu sio opc dpc sls hsio hopc hdpc hsls""".split()

KEYWORDS: dict[str, str] = {word: word for word in _PLAIN_KEYWORDS}
for _kind, _words in _KEYWORD_KINDS.items():
    KEYWORDS.update({word: _kind for word in _words.split()})

NAMED_CONSTANTS: dict[str, int] = {
    "icmptype": 0, "icmpcode": 1,
    "icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
    "icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
    "icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
    "icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
    "icmp6type": 0, "icmp6code": 1,
    "icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
    "icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
    "icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
    "icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133,
    "icmp6-routeradvert": 134, "icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136,
    "icmp6-redirect": 137, "icmp6-routerrenum": 138, "icmp6-nodeinformationquery": 139,
    "icmp6-nodeinformationresponse": 140, "icmp6-ineighbordiscoverysolicit": 141,
    "icmp6-ineighbordiscoveryadvert": 142, "icmp6-multicastlistenerreportv2": 143,
    "icmp6-homeagentdiscoveryrequest": 144, "icmp6-homeagentdiscoveryreply": 145,
    "icmp6-mobileprefixsolicit": 146, "icmp6-mobileprefixadvert": 147,
    "icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
    "icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
    "icmp6-multicastrouterterm": 153,
    "tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
    "tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
}

# name -> (tcp port or None, udp port or None), as getservbyname answers on Debian 12.
SERVICES: dict[str, tuple[int | None, int | None]] = {
    "ftp-data": (20, None), "ftp": (21, None), "ssh": (22, None), "telnet": (23, None),
    "smtp": (25, None), "domain": (53, 53), "tftp": (None, 69), "http": (80, None),
    "www": (80, None), "pop3": (110, None), "ntp": (None, 123), "netbios-ns": (None, 137),
    "netbios-dgm": (None, 138), "netbios-ssn": (139, None), "imap2": (143, None),
    "imap": (143, None), "snmp": (161, 161), "snmp-trap": (162, 162), "bgp": (179, None),
    "ldap": (389, 389), "https": (443, 443), "microsoft-ds": (445, None),
    "isakmp": (None, 500), "syslog": (514, 514), "submission": (587, None),
    "imaps": (993, None), "pop3s": (995, None), "openvpn": (1194, 1194),
    "radius": (1812, 1812), "radius-acct": (1813, 1813), "mysql": (3306, None),
    "postgresql": (5432, None), "sip": (5060, 5060), "sip-tls": (5061, 5061),
    "nfs": (2049, 2049), "kerberos": (88, 88), "bootps": (None, 67), "bootpc": (None, 68),
    "echo": (7, 7), "discard": (9, 9), "daytime": (13, 13), "finger": (79, None),
    "whois": (43, None), "rsync": (873, None), "l2tp": (None, 1701),
    "xmpp-client": (5222, None), "rtsp": (554, 554), "epmd": (4369, None),
    "amqp": (5672, None), "redis": (6379, None), "mdns": (None, 5353), "git": (9418, None),
    "svn": (3690, None), "ms-sql-s": (1433, None), "ms-sql-m": (None, 1434),
    "iso-tsap": (102, None),
}

IP_PROTOCOLS: dict[str, int] = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
    "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
    "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81,
    "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98, "pim": 103,
    "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133,
    "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139,
    "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143, "mptcp": 262,
}

# libpcap's nametoaddr.c eproto_db: names for `ether proto \NAME`.
ETHER_PROTOCOLS: dict[str, int] = {
    "aarp": 0x80F3, "arp": 0x0806, "atalk": 0x809B, "decnet": 0x6003, "ip": 0x0800,
    "ip6": 0x86DD, "lat": 0x6004, "loopback": 0x9000, "mopdl": 0x6001, "moprc": 0x6002,
    "netbeui": 0xF0, "rarp": 0x8035, "sca": 0x6007, "stp": 0x42, "ipx": 0xE0, "iso": 0xFE,
    "pup": 0x0200,
}
