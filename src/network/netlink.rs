//! The kernel calls of the pod network, over rtnetlink: links (the VXLAN device, the bridge), routes
//! marked with tug's own route protocol number (so they are found again after a restart and on
//! cleanup), neighbour and forwarding-database entries for VXLAN peers.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Error, Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

/// The route protocol number on every route tug adds (unnamed in /etc/iproute2/rt_protos).
pub const ROUTE_PROTOCOL: u8 = 122;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;

/// A connection to the kernel's routing socket.
pub fn connect() -> std::io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

fn errno(error: &Error) -> Option<i32> {
    match error {
        Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, Error> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(error) if errno(&error) == Some(ENODEV) => Ok(None),
        Err(error) => Err(error),
    }
}

pub fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::Address(bytes) => bytes.as_slice().try_into().ok(),
        _ => None,
    })
}

/// Deletes the link `name` if it exists.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<(), Error> {
    if let Some(link) = link_by_name(handle, name).await? {
        handle.link().del(link.header.index).execute().await?;
    }
    Ok(())
}

/// The index and MTU of the interface holding `ip`.
pub async fn interface_of(handle: &Handle, ip: IpAddr) -> Result<Option<(u32, u32)>, Error> {
    let mut addresses = handle.address().get().set_address_filter(ip).execute();
    let Some(address) = addresses.try_next().await? else { return Ok(None) };
    let index = address.header.index;
    let link = handle.link().get().match_index(index).execute().try_next().await?;
    let mtu = link.and_then(|l| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
    });
    Ok(Some((index, mtu.unwrap_or(1500))))
}

/// What a VXLAN device is made of.
#[derive(Debug, Clone, Copy)]
pub struct Vxlan<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub underlay: Option<u32>,
    pub mtu: u32,
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
}

/// Creates the VXLAN device (a device of that name made otherwise is replaced), sets its MAC, MTU and
/// address and brings it up; its index.
pub async fn ensure_vxlan(handle: &Handle, vxlan: &Vxlan<'_>) -> Result<u32, Error> {
    if let Some(existing) = link_by_name(handle, vxlan.name).await? {
        if link_mac(&existing) != Some(vxlan.mac) || !is_vxlan_from(&existing, vxlan.local) {
            handle.link().del(existing.header.index).execute().await?;
        }
    }
    let mut builder = LinkVxlan::new(vxlan.name, vxlan.vni).local(vxlan.local).port(vxlan.port).learning(false);
    if let Some(underlay) = vxlan.underlay {
        builder = builder.dev(underlay);
    }
    match handle.link().add(builder.build()).execute().await {
        Err(error) if errno(&error) != Some(EEXIST) => return Err(error),
        _ => {}
    }
    let link = link_by_name(handle, vxlan.name).await?.ok_or(Error::RequestFailed)?;
    let index = link.header.index;
    let settings = LinkUnspec::new_with_index(index).address(vxlan.mac.to_vec()).mtu(vxlan.mtu).up().build();
    handle.link().set(settings).execute().await?;
    handle.address().add(index, IpAddr::V4(vxlan.address), 32).replace().execute().await?;
    Ok(index)
}

/// Whether the link is a VXLAN device sending from `local`.
fn is_vxlan_from(link: &LinkMessage, local: Ipv4Addr) -> bool {
    use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkInfo};
    link.attributes.iter().any(|attribute| match attribute {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|info| match info {
            LinkInfo::Data(InfoData::Vxlan(data)) => {
                data.iter().any(|d| matches!(d, InfoVxlan::Local(ip) if *ip == local))
            }
            _ => false,
        }),
        _ => false,
    })
}

/// A route of tug's to `destination/prefix` via `gateway`, on `device` (on-link) or wherever the
/// kernel finds the gateway.
pub fn route(destination: Ipv4Addr, prefix: u8, gateway: Ipv4Addr, device: Option<u32>) -> RouteMessage {
    let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination, prefix)
        .gateway(gateway)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    if let Some(device) = device {
        builder = builder.output_interface(device).onlink();
    }
    builder.build()
}

pub async fn replace_route(handle: &Handle, route: RouteMessage) -> Result<(), Error> {
    handle.route().add(route).replace().execute().await
}

pub async fn delete_route(handle: &Handle, route: RouteMessage) -> Result<(), Error> {
    match handle.route().del(route).execute().await {
        Err(error) if matches!(errno(&error), Some(ESRCH | ENOENT)) => Ok(()),
        other => other,
    }
}

/// tug's IPv4 routes (those with its route protocol, in any table), each with its destination.
pub async fn our_routes(handle: &Handle) -> Result<Vec<(RouteMessage, Ipv4Addr, u8)>, Error> {
    let mut routes = handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    let mut ours = Vec::new();
    while let Some(route) = routes.try_next().await? {
        if route.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
            continue;
        }
        let destination = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let prefix = route.header.destination_prefix_length;
        ours.push((route, destination.unwrap_or(Ipv4Addr::UNSPECIFIED), prefix));
    }
    Ok(ours)
}

/// `ip neigh replace <ip> lladdr <mac> dev <device> nud permanent`.
pub async fn replace_neighbour(handle: &Handle, device: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), Error> {
    handle
        .neighbours()
        .add(device, IpAddr::V4(ip))
        .link_layer_address(&mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
}

/// `bridge fdb replace <mac> dev <device> dst <remote> self permanent`.
pub async fn replace_fdb(handle: &Handle, device: u32, mac: [u8; 6], remote: Ipv4Addr) -> Result<(), Error> {
    handle
        .neighbours()
        .add_bridge(device, &mac)
        .flags(NeighbourFlags::Own)
        .destination(IpAddr::V4(remote))
        .replace()
        .execute()
        .await
}

/// Deletes the permanent neighbour (ARP) entries of `device` for addresses not in `keep_ips` and its
/// forwarding entries for MACs not in `keep_macs`: what is left of peers that are gone.
pub async fn prune_peers(
    handle: &Handle,
    device: u32,
    keep_ips: &[Ipv4Addr],
    keep_macs: &[[u8; 6]],
) -> Result<(), Error> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
    use rtnetlink::packet_route::AddressFamily;
    for family in [AddressFamily::Inet, AddressFamily::Bridge] {
        let entries: Vec<NeighbourMessage> =
            handle.neighbours().get().set_address_family(family).execute().try_collect().await?;
        for entry in entries {
            if entry.header.ifindex != device || entry.header.state != NeighbourState::Permanent {
                continue;
            }
            let keep = entry.attributes.iter().any(|attribute| match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) if family == AddressFamily::Inet => {
                    keep_ips.contains(ip)
                }
                NeighbourAttribute::LinkLayerAddress(mac) if family == AddressFamily::Bridge => {
                    keep_macs.iter().any(|keep| keep[..] == mac[..])
                }
                _ => false,
            });
            if !keep {
                handle.neighbours().del(entry).execute().await?;
            }
        }
    }
    Ok(())
}
