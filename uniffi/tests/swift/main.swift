// One inspection through the generated Swift bindings, as an iOS app drives them: the same
// steps as uniffi/tests/kotlin/Inspection.kt. uniffi/tests/swift.rs compiles it with the
// bindings wherever swiftc exists (Debian has none).
//
// Run as: inspection <server url> <username> <password> <inspector id> <record id>
//   <store dir> <photo file>

import Foundation

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write((message() + "\n").data(using: .utf8)!)
        exit(1)
    }
}

let args = CommandLine.arguments
let (url, username, password, inspectorId, recordId, storeDir, photoPath) =
    (args[1], args[2], args[3], args[4], args[5], args[6], args[7])

do {
    // The store keeps the session: log in once, then sync without handling tokens.
    let store = try MobileStore.open(dir: storeDir, inspectorId: inspectorId)
    try store.login(serverUrl: url, username: username, password: password)
    let first = try store.sync()
    check(first.newRecords.contains(recordId), "the assigned record arrives: \(first)")

    // Answer every item, offline.
    let record = try store.record(recordId: recordId)
    let items = try record.items()
    for item in items {
        try record.setChecked(item: item.code, checked: true)
        try record.setMethods(item: item.code, methods: item.foreseenMethods)
        try record.setFinding(item: item.code, finding: "现场核查，未发现问题")
    }
    try record.setResultCategories(categories: [.noProblem])
    try record.setFollowUp(measure: .noFollowUp, deadline: nil, detail: nil)
    // From the camera's file: the photo's bytes never cross the FFI.
    let photo = try record.importPhotoFile(item: items[0].code, path: photoPath, caption: "门头照片")
    check(try store.pending().blobs >= 2, "the photo waits to go up")

    // Errors arrive as cases of SuijiError.
    do {
        _ = try store.record(recordId: "task-0/no-such-record")
        check(false, "an unknown record must not open")
    } catch SuijiError.NotFound {
    }

    try record.sign(imagePng: nil)
    let sent = try store.sync()
    check(sent.blobsUploaded.contains(photo.thumbnailSha256), "the thumbnail went up: \(sent)")
    check(try record.review().state == .open, "not submitted yet")
    check(try store.logout(), "the server revoked the session")
    print("swift inspection: ok")
} catch {
    check(false, "failed: \(error)")
}
